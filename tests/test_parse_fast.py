"""The lxml fast path (aggregator/parse/fast.py) against feedparser, on real documents.

Every fixture is parsed twice, once by each reader forced; wherever the fast
path takes a document, the two results must be identical. The documents it must
refuse (so feedparser's robustness applies) are checked one by one.
"""

from __future__ import annotations

import contextlib
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from feedparser.html import _cp1252
from hypothesis import given
from hypothesis import strategies as st

from aggregator.models import ParsedFeed
from aggregator.parse import fast
from aggregator.parse.feeds import FastPathDeclined, Reader, parse_xml
from aggregator.parse.normalize import FeedContext, ParseError

FIXTURES = Path(__file__).parent / "fixtures"
DOCUMENTS = sorted(
    path
    for folder in (FIXTURES / "feeds", FIXTURES / "corpus")
    for path in folder.iterdir()
    if path.suffix not in (".json", ".md")
)
TYPES = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".rdf": "application/rdf+xml",
}
CTX = FeedContext(
    url="https://feeds.example.org/nachrichten/feed.xml",
    outlet="Beispielblatt",
    outlet_language="de",
    now=datetime(2025, 3, 14, 12, 0, tzinfo=UTC),
)
# Documents the fast path must take: the usual shapes of RSS 2.0, RDF and Atom,
# in UTF-8, ISO-8859-1 and Windows-1252.
TAKEN = {
    "mastodon_account_untitled.rss",
    "rss1_rdf_de_syndication.rdf",
    "rss2_de_iso-8859-1.xml",
    "rss2_de_utf8_umlauts_cdata_entities.xml",
    "rss2_de_windows-1252.xml",
    "feed-rs__atom_mediarss_youtube_1.xml",
    "feed-rs__rss_1.0_iso8859.xml",
    "feedparser__encoding_demoronize-1.xml",
    "rss-parser-js__heise.atom",
    "rss-parser-js__itunes-href.rss",
    "rssparser__feed-test-greek.xml",
    "rssparser__rdf-feed-test.xml",
}


def parse(content: bytes, reader: Reader, content_type: str | None = None) -> ParsedFeed:
    return parse_xml(content, content_type, CTX, reader)


def outcome(content: bytes, reader: Reader, content_type: str | None) -> ParsedFeed | str:
    """The feed, or the refusal's reason: refusals must agree too."""
    try:
        return parse(content, reader, content_type)
    except FastPathDeclined:
        raise
    except ParseError as exc:
        return f"ParseError: {exc}"


def entry_fields(feed: ParsedFeed | str) -> list[tuple[object, ...]] | str:
    if isinstance(feed, str):
        return feed
    return [
        (e.guid, e.url, e.title, e.summary, e.published, e.author, e.language) for e in feed.entries
    ]


@pytest.mark.parametrize("content_type", [None, "by extension"])
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_fast_path_gives_what_feedparser_gives(path: Path, content_type: str | None) -> None:
    if content_type is not None:
        content_type = TYPES.get(path.suffix, "application/xml")
    content = path.read_bytes()
    try:
        fast = outcome(content, "fast", content_type)
    except FastPathDeclined:
        assert path.name not in TAKEN
        return
    slow = outcome(content, "feedparser", content_type)
    assert entry_fields(fast) == entry_fields(slow)
    assert fast == slow  # and everything else: feed title, link, language, ttl, warning
    assert outcome(content, "auto", content_type) == fast


def test_fast_path_takes_the_usual_feeds() -> None:
    taken = set()
    for path in DOCUMENTS:
        try:
            parse(path.read_bytes(), "fast")
        except FastPathDeclined:
            continue
        taken.add(path.name)
    assert taken >= TAKEN


def test_fixture_checks_reach_the_fast_path() -> None:
    """The hand-written expectations of test_parse.py hold on the fast path too."""
    feed = parse((FIXTURES / "feeds/rss2_de_utf8_umlauts_cdata_entities.xml").read_bytes(), "fast")
    assert feed.title == "Beispielblatt – Nachrichten"
    assert feed.language == "de"
    assert feed.ttl_seconds == 15 * 60
    first = feed.entries[0]
    assert first.title == "Bundestag beschließt Änderung des Straßenverkehrsgesetzes"
    assert first.guid == "beispielblatt-100"
    assert first.author == "Jörg Müller"
    rdf = parse((FIXTURES / "feeds/rss1_rdf_de_syndication.rdf").read_bytes(), "fast")
    assert rdf.ttl_seconds is not None and rdf.entries


# -- what the fast path must leave to feedparser ------------------------------------

RSS = """<?xml version="1.0" encoding="utf-8"?>
{prolog}<rss version="2.0"><channel><title>Blatt</title><link>https://blatt.example/</link>
<item><title>{title}</title><link>https://blatt.example/1</link>
<description>Text über die Lage.</description></item></channel></rss>
"""


def rss(title: str = "Eine Meldung", prolog: str = "") -> bytes:
    return RSS.format(title=title, prolog=prolog).encode()


def assert_left_to_feedparser(content: bytes, content_type: str | None = None) -> None:
    with pytest.raises(FastPathDeclined):
        parse(content, "fast", content_type)
    assert outcome(content, "auto", content_type) == outcome(content, "feedparser", content_type)


def test_plain_document_is_taken() -> None:
    """The baseline for the triggers below: the same document without them."""
    feed = parse(rss(), "fast")
    assert [e.title for e in feed.entries] == ["Eine Meldung"]


def test_doctype_goes_to_feedparser() -> None:
    content = rss("Caf&eacute; &amp; mehr", '<!DOCTYPE rss [<!ENTITY eacute "&#233;">]>\n')
    assert_left_to_feedparser(content)
    assert parse(content, "auto").entries[0].title == "Café & mehr"


def test_external_entity_is_never_resolved() -> None:
    content = rss("&secret;", '<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n')
    assert_left_to_feedparser(content)
    assert "root:" not in str(outcome(content, "auto", None))


def test_undecodable_text_goes_to_feedparser() -> None:
    """Declared UTF-8, written in Latin-1: feedparser's encoding fallback and warning."""
    content = rss("Straße").replace("Straße".encode(), "Straße".encode("latin-1"))
    assert_left_to_feedparser(content)
    feed = parse(content, "auto")
    assert feed.warning is not None
    assert feed.entries[0].title == "Straße"


def test_charset_mismatch_goes_to_feedparser() -> None:
    assert_left_to_feedparser(rss("Straße"), "text/xml")  # text/xml without charset: us-ascii


def test_not_an_xml_media_type_goes_to_feedparser() -> None:
    assert_left_to_feedparser(rss(), "text/html")


def test_malformed_xml_goes_to_feedparser() -> None:
    assert_left_to_feedparser(rss("Tom & Jerry"))  # unescaped ampersand
    assert_left_to_feedparser(rss()[:-40])  # truncated
    assert_left_to_feedparser((FIXTURES / "feeds/malformed_truncated.xml").read_bytes())


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><feeds><item><title>A</title></item></feeds>',
        b'<feed version="0.3" xmlns="http://purl.org/atom/ns#"><entry><title>A</title></entry></feed>',
        b"<html><body><p>Kein Feed</p></body></html>",
    ],
    ids=["unknown root", "Atom 0.3", "HTML page"],
)
def test_unknown_root_goes_to_feedparser(document: bytes) -> None:
    assert_left_to_feedparser(document)


def test_xhtml_content_goes_to_feedparser() -> None:
    assert_left_to_feedparser((FIXTURES / "feeds/atom_en_newsroom.xml").read_bytes())


def test_unreproduced_element_goes_to_feedparser() -> None:
    point = b'<georss:point xmlns:georss="http://www.georss.org/georss">52.5 13.4</georss:point>'
    content = rss().replace(b"</item>", point + b"</item>")
    assert_left_to_feedparser(content)


def test_feed_without_items_goes_to_feedparser() -> None:
    """feedparser tells a valid empty feed from a document that is no feed."""
    content = b'<rss version="2.0"><channel><title>Leer</title></channel></rss>'
    assert_left_to_feedparser(content)
    assert parse(content, "auto").entries == []


def test_huge_text_node_goes_to_feedparser() -> None:
    """lxml is held to its default limits (huge_tree=False): a text node over 10 MB
    declines instead of being built."""
    body = io.BytesIO()
    body.write(b'<rss version="2.0"><channel><item><title>Riesig</title><description>')
    body.write(b"Wort " * 2_200_000)
    body.write(b"</description></item></channel></rss>")
    assert_left_to_feedparser(body.getvalue())


def _fix_text_as_feedparser(output: str) -> str:
    """fast._fix_text as it was written first: the repair tried on all non-ASCII text."""
    if output.isascii():
        return output
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        output = output.encode("iso-8859-1").decode("utf-8")
    return output.translate(_cp1252) if re.search("[\x80-\x9f]", output) else output


# Lead bytes valid and not, continuation bytes, C1 controls, ASCII, beyond Latin-1.
@given(st.text(alphabet="\xc0\xc1\xc2\xc3\xdf\xe2\xef\xf0\xf4\xf5\x80\x93\x9f\xa0\xbfaä€"))
def test_fix_text_tries_the_repair_where_it_can_succeed(text: str) -> None:
    assert fast._fix_text(text) == _fix_text_as_feedparser(text)


# Each end of U+0080-U+00BF and beyond it, on both sides, and beyond Latin-1.
@given(st.text(alphabet="a\x7f\x80\x9f\xa0\xbf\xc0\xffä€\ud800"))
def test_the_test_for_c1_or_continuation_is_a_regex_search(text: str) -> None:
    expected = re.search("[\x80-\xbf]", text) is None
    assert fast._no_c1_or_continuation(text) == expected


@pytest.mark.parametrize(
    "text", ["Göttingen", "GÃ¶ttingen", "Â©", "don\x92t", "Ã¶\x93", "\xc3", "ä€"]
)
def test_fix_text_examples(text: str) -> None:
    assert fast._fix_text(text) == _fix_text_as_feedparser(text)
