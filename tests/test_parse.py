"""parse_feed on real documents: the fixtures in tests/fixtures/feeds (written for
this project) and a small sample of other parsers' corpora (tests/fixtures/corpus).
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.models import Entry, ParsedFeed
from aggregator.parse import ParseError, parse_feed
from aggregator.parse import html as html_module
from aggregator.parse.html import (
    clean_text,
    html_to_text,
    plain_to_text,
    title_from_text,
    truncate,
)
from aggregator.parse.normalize import normalize_language

FIXTURES = Path(__file__).parent / "fixtures"
FEEDS = FIXTURES / "feeds"
CORPUS = FIXTURES / "corpus"
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


def parse(
    content: bytes,
    *,
    content_type: str | None = None,
    outlet_language: str | None = None,
    url: str = "https://feeds.example.org/feed",
) -> ParsedFeed:
    return parse_feed(
        content,
        url=url,
        content_type=content_type,
        outlet="Beispielblatt",
        outlet_language=outlet_language,
        now=NOW,
    )


def parse_file(name: str, **kwargs: str | None) -> ParsedFeed:
    return parse((FEEDS / name).read_bytes(), **kwargs)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def sha256(title: str, summary: str) -> str:
    return hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest()


# -- RSS 2.0, UTF-8, German ----------------------------------------------------


@pytest.fixture(scope="module")
def german() -> ParsedFeed:
    return parse_file("rss2_de_utf8_umlauts_cdata_entities.xml", content_type="application/rss+xml")


def test_rss2_feed_metadata(german: ParsedFeed) -> None:
    assert german.title == "Beispielblatt – Nachrichten"
    assert german.link == "https://www.beispielblatt.de/"
    assert german.language == "de"
    assert german.ttl_seconds == 15 * 60
    assert german.warning is None
    assert len(german.entries) == 4


def test_rss2_cdata_html_becomes_plain_text(german: ParsedFeed) -> None:
    entry = german.entries[0]
    assert entry.title == "Bundestag beschließt Änderung des Straßenverkehrsgesetzes"
    # <p> boundaries become spaces, &nbsp; a plain space, <script> content vanishes
    assert entry.summary == (
        "Nach monatelangem Streit hat der Bundestag die Reform beschlossen. "
        "Städte und Gemeinden sollen künftig leichter Tempo 30 anordnen können. Mehr zum Thema"
    )
    assert entry.guid == "beispielblatt-100"
    assert entry.url == (
        "https://www.beispielblatt.de/politik/strassenverkehrsgesetz-100.html"
        "?utm_source=rss&utm_medium=feed&seite=2#kommentare"
    )
    assert entry.canonical_url == (
        "https://www.beispielblatt.de/politik/strassenverkehrsgesetz-100.html?seite=2"
    )
    assert entry.published == utc(2025, 3, 14, 8, 30)
    assert entry.published.tzinfo is UTC
    assert not entry.published_estimated
    assert entry.author == "Jörg Müller"
    assert entry.language == "de"
    assert entry.outlet == "Beispielblatt"
    assert entry.content_hash == sha256(entry.title, entry.summary)


def test_rss2_entities_and_german_quotes_decoded(german: ParsedFeed) -> None:
    entry = german.entries[1]
    # &#8222; &#8220; and the double-escaped &amp;auml; all come out as characters
    assert (
        entry.title
        == "„Größter Erfolg der Vereinsgeschichte“: Aufsteiger feiert äußerst knappen Sieg"
    )
    assert entry.summary == (
        "Der Trainer sprach von einem historischen Abend & einer Mannschaft, "
        "die „nie aufgegeben“ habe."
    )
    assert entry.guid == "https://www.beispielblatt.de/sport/aufsteiger-sieg-101.html"
    assert entry.canonical_url == "https://www.beispielblatt.de/sport/aufsteiger-sieg-101.html?id=7"
    assert entry.published == utc(2025, 3, 14, 10, 5)


def test_rss2_javascript_link_dropped_and_future_date_clamped(german: ParsedFeed) -> None:
    entry = german.entries[2]
    assert entry.title == "Wetterdienst warnt vor Sturmböen an der Küste"
    assert entry.url is None
    assert entry.canonical_url is None
    # no guid, no usable link: a hash of title and date, stable across fetches
    expected = hashlib.sha1(
        f"{entry.title}\n{utc(2025, 3, 15, 5, 0).isoformat()}".encode()
    ).hexdigest()
    assert entry.guid == f"sha1:{expected}"
    # dated the next day: beyond clock skew, so clamped to "now"
    assert entry.published == NOW
    assert not entry.published_estimated


def test_rss2_undated_item_from_content_encoded(german: ParsedFeed) -> None:
    entry = german.entries[3]
    assert entry.published == NOW
    assert entry.published_estimated
    # a relative link is resolved against the URL the feed was fetched from
    assert entry.url == "https://feeds.example.org/lokales/freibad-103.html"
    assert entry.guid == entry.url
    # summary from content:encoded, cut at a word boundary near 1000 characters
    assert entry.summary.startswith("Sanierung oder Neubau? Der Stadtrat hat die Entscheidung")
    assert entry.summary.endswith(" Die Opposition…")
    assert 900 < len(entry.summary) <= 1001
    assert "<" not in entry.summary


def test_parsing_is_deterministic(german: ParsedFeed) -> None:
    again = parse_file("rss2_de_utf8_umlauts_cdata_entities.xml")
    assert [e.guid for e in again.entries] == [e.guid for e in german.entries]
    assert [e.content_hash for e in again.entries] == [e.content_hash for e in german.entries]


# -- legacy encodings -------------------------------------------------------------


def test_iso_8859_1_feed() -> None:
    feed = parse_file("rss2_de_iso-8859-1.xml", content_type="text/xml; charset=ISO-8859-1")
    assert feed.title == "Lokalanzeiger Süd"
    [entry] = feed.entries
    assert entry.title == "Bäckerei in der Hauptstraße schließt nach 90 Jahren"
    assert entry.summary == (
        "Für viele Stammkunden ist es ein trauriger Tag: Die Traditionsbäckerei Weiß gibt auf. "
        "Grüße an alle Süßmäuler!"
    )
    assert entry.canonical_url == (
        "http://www.lokalanzeiger-sued.de/wirtschaft/baeckerei-schliesst?teil=1"
    )
    assert entry.published == utc(2025, 3, 13, 17, 45)


@pytest.mark.parametrize("content_type", [None, "application/rss+xml", "text/xml"])
def test_windows_1252_feed(content_type: str | None) -> None:
    feed = parse_file("rss2_de_windows-1252.xml", content_type=content_type)
    assert feed.title == "Wirtschaftsdienst – Märkte"
    [entry] = feed.entries
    assert entry.title == "„Preisschock“ an der Zapfsäule: Diesel kostet 2,10 €"
    assert entry.summary == (
        "Autofahrer müssen tiefer in die Tasche greifen – der ADAC spricht von "
        "„unverhältnismäßigen“ Aufschlägen … und rät zum Tanken am Abend."
    )
    assert entry.guid == "wd-2025-0313-diesel"
    assert entry.canonical_url == "https://wirtschaftsdienst.example.de/maerkte/diesel-preis"
    assert entry.published == utc(2025, 3, 13, 6, 15)


def test_windows_1252_declared_as_iso_8859_1() -> None:
    """The most common mislabel of German feeds: „ “ € sent as ISO-8859-1."""
    doc = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><item>'
        "<title>„Zitat“ kostet 5 € – Grüße</title><link>https://a.de/1</link>"
        "</item></channel></rss>"
    ).encode("cp1252")
    feed = parse(doc, content_type="text/xml; charset=ISO-8859-1")
    assert feed.entries[0].title == "„Zitat“ kostet 5 € – Grüße"


def test_utf16_document() -> None:
    doc = (
        '<?xml version="1.0" encoding="utf-16"?><rss version="2.0"><channel>'
        "<item><title>Öffnungszeiten</title><guid>u16</guid></item></channel></rss>"
    ).encode("utf-16")
    assert parse(doc).entries[0].title == "Öffnungszeiten"


# -- Atom, RDF, JSON Feed ---------------------------------------------------------


def test_atom_feed() -> None:
    feed = parse_file("atom_en_newsroom.xml", content_type="application/atom+xml")
    assert feed.title == "Example Newsroom"
    assert feed.link == "https://newsroom.example.com/"
    assert feed.language == "en"
    first, second = feed.entries
    assert first.title == "Central bank holds rates steady for third month"
    assert first.summary == "Policymakers said inflation was easing but not fast enough."
    assert first.guid == "tag:newsroom.example.com,2025:entry-881"
    assert first.canonical_url == "https://newsroom.example.com/economy/rates-steady?lang=en"
    assert first.published == utc(2025, 3, 14, 10, 0)  # <published>, not <updated>
    assert first.author == "Priya Raman"
    assert first.language == "en"
    # xml:lang on the entry wins; xml:base resolves the relative link; only <updated>
    assert second.language == "de"
    assert second.url == "https://newsroom.example.com/world/port-strike"
    assert second.published == utc(2025, 3, 14, 9, 15)
    assert second.summary == (
        "Seit Mittwoch ruht die Arbeit an den Terminals. Die Gewerkschaft fordert mehr Lohn."
    )


def test_rss1_rdf_feed_with_syndication_module() -> None:
    feed = parse_file("rss1_rdf_de_syndication.rdf")
    assert feed.title == "Alpenfunk Nachrichten"
    assert feed.language == "de"
    assert feed.ttl_seconds == 3600 // 4
    [entry] = feed.entries
    assert entry.title == "Lawinenwarnstufe in Tirol auf „groß“ erhöht"
    assert entry.guid == "https://alpenfunk.example.at/stories/4411/"
    assert entry.canonical_url == "https://alpenfunk.example.at/stories/4411/"
    assert entry.published == utc(2025, 3, 14, 6, 20)
    assert entry.author == "Redaktion Innsbruck"


@pytest.mark.parametrize("content_type", ["application/feed+json", "application/json", None])
def test_json_feed(content_type: str | None) -> None:
    feed = parse_file("jsonfeed_1.1_de.json", content_type=content_type)
    assert feed.title == "Stadtblog Köln"
    assert feed.link == "https://stadtblog-koeln.example.de/"
    assert feed.language == "de"
    first, second, third = feed.entries
    assert first.title == "Rheinpegel steigt: Stadt sperrt Uferstraße"
    assert (
        first.summary
        == "Der Pegel lag am Morgen bei 7,80 Metern. Die Feuerwehr baut Schutzwände auf."
    )
    assert first.guid == "https://stadtblog-koeln.example.de/2025/03/rheinpegel"
    assert first.canonical_url == "https://stadtblog-koeln.example.de/2025/03/rheinpegel"
    assert first.published == utc(2025, 3, 14, 5, 45)
    assert first.author == "Anke Schäfer"
    # numeric id, external_url, summary preferred over content_text, date_modified only
    assert second.guid == "20250313"
    assert second.url == "https://www.beispielblatt.de/kultur/dom-konzert"
    assert second.summary == "Die Karten für das Orgelkonzert waren binnen einer Stunde vergriffen."
    assert second.published == utc(2025, 3, 13, 20, 0)
    assert second.language == "en"
    # untitled: title from the first sentence; data: URL refused; undated
    assert third.title == "Straßenbahnlinie 7 fährt wieder."
    assert third.url is None
    assert third.guid == "kurzmeldung-3"
    assert third.published_estimated


def test_json_feed_with_wrong_types_is_read_not_crashed() -> None:
    doc = (
        b'{"version": "https://jsonfeed.org/version/1", "title": ["x"], "items": ['
        b'{"id": true, "title": 5, "content_text": "Text eins.", "url": 7},'
        b'{"id": {"a": 1}, "title": "Zwei", "date_published": "gestern", "authors": "x",'
        b' "date_modified": "0001-01-01T00:00:00+01:00"},'
        b'"kein Objekt"]}'
    )
    feed = parse(doc)
    assert feed.title is None
    assert [e.title for e in feed.entries] == ["Text eins.", "Zwei"]
    assert feed.entries[1].published_estimated


# -- social posts without titles ----------------------------------------------------


def test_mastodon_posts_get_titles_from_their_text() -> None:
    feed = parse_file("mastodon_account_untitled.rss", outlet_language="de")
    first, second = feed.entries
    assert first.title == "Eilmeldung: Die Landesregierung tritt geschlossen zurück."
    assert first.summary == (
        "Eilmeldung: Die Landesregierung tritt geschlossen zurück. "
        "Neuwahlen sollen im Juni stattfinden. #Landtag"
    )
    assert first.guid == "https://social.example/@beispielblatt/111222333444555666"
    assert first.published == utc(2025, 3, 14, 11, 2)
    assert first.language == "de"  # the feed names none: the outlet's language
    # no sentence end within 100 characters ("3." is an ordinal): cut at a word
    assert second.title == (
        "Am 3. Oktober öffnet das neue Stadtmuseum seine Türen und zeigt auf drei Etagen "
        "die Geschichte der…"
    )


# -- documents that are not feeds -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "reason"),
    [
        ("html_page_not_a_feed.html", "text/html; charset=utf-8", "not a feed (got an HTML page)"),
        ("html_page_not_a_feed.html", None, "not a feed (got an HTML page)"),
        ("malformed_truncated.xml", "application/rss+xml", "not well-formed XML (line 7:"),
        ("empty.xml", "application/rss+xml", "empty document"),
    ],
)
def test_not_a_feed(name: str, content_type: str | None, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_file(name, content_type=content_type)
    assert str(caught.value).startswith(reason)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (b"  \n\t ", None, "empty document"),
        (b'{"rss": {"channel": {}}}', "application/json", "not a feed (JSON, but not a JSON Feed)"),
        (b"[1, 2]", "application/json", "not a feed (JSON, but not a JSON Feed)"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": ', None, "invalid JSON"),
        (b"<note><to>Tove</to></note>", "text/xml", "not a feed (no RSS, Atom or RDF"),
        (b"Service Unavailable", "text/plain", "not well-formed XML"),
    ],
)
def test_not_a_feed_inline(content: bytes, content_type: str | None, reason: str) -> None:
    with pytest.raises(ParseError, match="^" + re.escape(reason)):
        parse(content, content_type=content_type)


def test_valid_feed_without_items_is_not_an_error() -> None:
    doc = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Leer</title></channel></rss>'
    feed = parse(doc)
    assert feed.entries == []
    assert feed.title == "Leer"
    assert parse(b'{"version": "https://jsonfeed.org/version/1.1", "items": []}').entries == []


def test_bozo_feed_with_entries_is_accepted_with_warning() -> None:
    feed = parse_file("rss2_bozo_unescaped_ampersand.xml")
    assert feed.warning is not None
    assert "not well-formed" in feed.warning
    [entry] = feed.entries
    assert entry.title == "Handball: Füchse & Löwen trennen sich unentschieden"
    assert entry.guid == "sport-77"


def test_json_content_type_on_xml_body_still_parses_xml() -> None:
    doc = (FEEDS / "rss1_rdf_de_syndication.rdf").read_bytes()
    assert parse(doc, content_type="application/json").title == "Alpenfunk Nachrichten"


def test_whitespace_before_xml_declaration_is_tolerated() -> None:
    doc = b"\n\n  " + (FEEDS / "rss2_de_iso-8859-1.xml").read_bytes()
    feed = parse(doc)
    assert feed.warning is None
    assert feed.entries[0].title == "Bäckerei in der Hauptstraße schließt nach 90 Jahren"


def test_duplicate_guids_keep_the_first_item() -> None:
    doc = (
        b'<rss version="2.0"><channel>'
        b"<item><guid>same</guid><title>Erste</title></item>"
        b"<item><guid>same</guid><title>Zweite</title></item>"
        b"</channel></rss>"
    )
    assert [e.title for e in parse(doc).entries] == ["Erste"]


# -- hostile documents ------------------------------------------------------------


def test_external_entity_is_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("GEHEIM-4711")
    for target in ("file:///etc/passwd", secret.as_uri()):
        doc = (
            f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "{target}">]>'
            '<rss version="2.0"><channel><title>t &e;</title><item><title>Titel &e; Ende</title>'
            "<description>Text &e;</description><link>https://a.de/1</link></item>"
            "</channel></rss>"
        ).encode()
        try:
            feed = parse(doc)
        except ParseError:
            continue
        text = repr(feed)
        assert "root:" not in text
        assert "GEHEIM" not in text
        assert feed.entries[0].title == "Titel Ende"


def test_document_naming_a_local_file_is_not_opened() -> None:
    """feedparser opens bytes that happen to be a path; parse_feed must not."""
    with pytest.raises(ParseError):
        parse(b"/etc/passwd")


def _billion_laughs() -> bytes:
    declarations = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    return (
        f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">{declarations}]>'
        '<rss version="2.0"><channel><item><title>&lol9;</title></item></channel></rss>'
    ).encode()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_billion_laughs_is_refused_quickly(encoding: str) -> None:
    doc = _billion_laughs().decode().encode(encoding)
    started = time.perf_counter()
    with pytest.raises(ParseError, match="entity expansion"):
        parse(doc)
    assert time.perf_counter() - started < 0.5


def test_harmless_entity_declarations_still_work() -> None:
    doc = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY nbsp "&#160;">'
        b'<!ENTITY verlag "Beispiel GmbH">]><rss version="2.0"><channel>'
        b"<item><title>Neu&nbsp;bei &verlag;</title></item></channel></rss>"
    )
    assert parse(doc).entries[0].title == "Neu bei Beispiel GmbH"


def test_deeply_nested_json_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse(b"{" + b'"a":[' * 100_000)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.text(max_size=400).map(lambda t: f'<rss version="2.0"><channel>{t}'.encode()),
        st.text(max_size=400).map(
            lambda t: ('{"version": "https://jsonfeed.org/version/1", ' + t).encode()
        ),
    )
)
def test_arbitrary_input_raises_only_parse_error(content: bytes) -> None:
    try:
        feed = parse(content)
    except ParseError:
        return
    for entry in feed.entries:
        assert isinstance(entry, Entry)
        assert entry.title
        assert entry.published.tzinfo is UTC


# -- the public corpora sample ------------------------------------------------------

CORPUS_FILES = sorted(p for p in CORPUS.iterdir() if p.name != "README.md")


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_document_parses_or_fails_cleanly(path: Path) -> None:
    started = time.perf_counter()
    try:
        feed = parse(path.read_bytes(), url=f"https://corpus.example/{path.name}")
    except ParseError as exc:
        assert str(exc)
    else:
        for entry in feed.entries:
            assert entry.guid and entry.title
            assert entry.url is None or entry.url.startswith(("http://", "https://"))
            assert len(entry.summary) <= 1001
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("name", "title", "first_entry_title", "language"),
    [
        ("feed-rs__rss_1.0_iso8859.xml", "Golem.de",
         "Digitalministerium: Neue Glasfaserförderung mit Schnellkasse", None),
        ("rssparser__rdf-feed-test.xml", "news.ORF.at",
         "Kiew erneut Ziel russischer Drohnenangriffe", "de"),
        ("rss-parser-js__heise.atom", "heise developer neueste Meldungen",
         "Java-Anwendungsserver: Red Hat gibt WildFly 10 frei", None),
        ("rss-parser-js__itunes-href.rss", "Transfermarkt",
         "Manager bewertet Transfers | Eberl lobt BVB für Pulisic-Deal – Hudson-Odoi kostet "
         "„fast so viel wie mein Kader“", "de"),
        ("rssparser__feed-test-greek.xml", "Liberal - ΕΠΙΚΑΙΡΟΤΗΤΑ",
         "«Πορτραίτα καραντίνας» για έμπνευση από τη συλλογή Φέλιου", "el"),
        ("rss-parser-js__uolNoticias.rss", "UOL Noticias",
         "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno", None),
        ("feed-rs__jsonfeed_elastic_1.1.json", "Blog – InfluxData",
         "InfluxDB vs. Graphite for Time Series Data & Metrics Benchmark", "en"),
        ("feed-rs__atom_mediarss_youtube_1.xml", "PBS Space Time",
         "Navigating with Quantum Entanglement", None),
        ("feedparser__encoding_demoronize-1.xml", None, "don’t", None),
    ],
)  # fmt: skip
def test_corpus_values(
    name: str, title: str | None, first_entry_title: str, language: str | None
) -> None:
    feed = parse((CORPUS / name).read_bytes())
    assert feed.title == title
    assert feed.language == language
    assert feed.entries[0].title == first_entry_title


def test_corpus_heise_tracking_parameter_removed() -> None:
    feed = parse((CORPUS / "rss-parser-js__heise.atom").read_bytes())
    entry = feed.entries[0]
    assert entry.url is not None and "wt_mc=" in entry.url
    assert entry.canonical_url == (
        "http://www.heise.de/developer/meldung/"
        "Java-Anwendungsserver-Red-Hat-gibt-WildFly-10-frei-3088438.html"
    )
    assert entry.published == utc(2016, 2, 1, 16, 22)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("feed-rs__rss_2.0_invalid_1.xml", "not well-formed XML"),
        ("feedparser__illformed_rss_item_link_corrupted_ampersands.xml", "not well-formed XML"),
        ("feedparser__json_version-key-missing.json", "not a feed (JSON, but not a JSON Feed)"),
    ],
)
def test_corpus_failures(name: str, reason: str) -> None:
    with pytest.raises(ParseError, match="^" + re.escape(reason)):
        parse((CORPUS / name).read_bytes())


def test_corpus_bozo_with_entries_and_empty_utf16_feed() -> None:
    osm = parse((CORPUS / "fastfeedparser__osm-pl.xml").read_bytes())
    assert osm.warning == "line 281: unclosed CDATA section"
    assert len(osm.entries) == 8
    assert osm.ttl_seconds == 3600
    assert parse((CORPUS / "feedparser__encoding_utf-16le-bom.xml").read_bytes()).entries == []


# -- text helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>Erster Absatz.</p><p>Zweiter&nbsp;Absatz</p>", "Erster Absatz. Zweiter Absatz"),
        ("Zeile<br>Zeile<br/>Zeile", "Zeile Zeile Zeile"),
        ("<b>fett</b>er Text", "fetter Text"),
        ("<style>p{color:red}</style><script>x()</script>sichtbar", "sichtbar"),
        ("Stra&szlig;e &amp; Platz &#8222;zitiert&#8220; &#x20AC;", "Straße & Platz „zitiert“ €"),
        ("Donau\u00addampf\u00adschiff", "Donaudampfschiff"),
        ("don\u0092t \u0084Zitat\u0093", "don’t „Zitat“"),
        ("Cafe\u0301", "Café"),  # NFC
        ("<![if !supportLists]>Punkt<![endif]> eins", "Punkt eins"),
        ("a < b und c > d", "a < b und c > d"),
        ("", ""),
    ],
)
def test_html_to_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


# Markup-ish text: tags bare, with attributes and broken, block, inline and
# skipped, character references whole, cut and bogus, controls; the first
# pieces alone make simple markup.
_SIMPLE_PIECES = [
    "<p>",
    "</div>",
    "<td>",
    "<em>",
    "</script>",
    "<style>",
    "<svg>",
    "</math>",
    "Wort ",
    "Göttingen\u0093",
    "\x00",
    "\u00ad",
    " \n",
    ">",
    "x</p>",
    "Cafe\u0301",
    '<a href="x">',
    "<img src='a&amp;b' alt=\"&lt;\"/>",
    "<br />",
    "</p >",
    '<P\tclass="x"\n>',
    "<br/>",
    "&amp;",
    "&auml;",
    "&amp",
    "&#8222;",
    "&#x20AC;",
    "&notit;",
    "&",
    "&#",
    "; ",
    "&nbsp",
    "&CounterClockwiseContourIntegral;",
    "&#0;",
    "&#xD800;",
    "'",
    '"',
    "=",
    "/",
]
_MARKUPISH = st.lists(st.sampled_from(_SIMPLE_PIECES), max_size=12).map("".join) | st.lists(
    st.sampled_from(
        [*_SIMPLE_PIECES, "<a href=x>", "<a href = 'x'>", "<input disabled>", "<a title='>'>",
         "</p class='x'>", "<!-- c -->", "<![CDATA[x]]>", "<!DOCTYPE html>", "<?pi?>", "<", "</",
         "<a\xa0href='x'>", "<a href='x'", "<a:b>", "</>", "<p/ >"]
    ),
    max_size=12,
).map("".join)  # fmt: skip


@given(_MARKUPISH, st.sampled_from([None, 5, 1000]))
def test_simple_markup_is_read_as_the_html_parser_reads_it(markup: str, limit: int | None) -> None:
    simple = html_module._SIMPLE_MARKUP
    html_module._SIMPLE_MARKUP = re.compile(r"(?!)")  # every document to HTMLParser
    try:
        expected = html_to_text(markup, limit)
    finally:
        html_module._SIMPLE_MARKUP = simple
    assert html_to_text(markup, limit) == expected


@pytest.mark.parametrize(
    "tag", ["title", "textarea", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"]
)
def test_elements_some_html_parser_reads_as_raw_text_are_left_to_it(tag: str) -> None:
    """Newer Pythons read these elements' content as text: the shortcut must not decide them."""
    assert html_module._simple_markup_text(f"<{tag}>A <b>B</b></{tag}><p>C</p>") is None
    assert html_module._simple_markup_text("<p>A <b>B</b></p>") == "A B"


def test_html_to_text_stops_early_on_long_articles() -> None:
    article = "<p>" + "Wort " * 200_000 + "</p>"
    started = time.perf_counter()
    text = html_to_text(article, limit=1000)
    assert time.perf_counter() - started < 0.2
    assert 1000 < len(text) < 100_000


def test_a_tag_left_open_for_a_megabyte_costs_one_reading() -> None:
    """HTMLParser read an unfinished tag again on every chunk: 1 MB took 4.7 s."""
    markup = "<p>Hallo</p><a" + ' b="x"' * 170_000
    started = time.perf_counter()
    text = html_to_text(markup, limit=300)
    assert time.perf_counter() - started < 1.0
    assert text.startswith("Hallo")
    closed = "<p>Hallo</p><img src='data:" + "A" * 100_000 + "'><p>Welt</p>"
    assert html_to_text(closed, limit=300) == "Hallo Welt"


def _clean_text_in_general(text: str) -> str:
    """clean_text without its shortcut for text that is already one clean line."""
    if html_module._TRANSLATED.search(text):
        text = text.translate(html_module._TRANSLATE)
    return unicodedata.normalize("NFC", " ".join(text.split()))


def test_clean_text_shortcut_sees_every_character_the_general_way_changes() -> None:
    """The shortcut rests on this: in this Python's Unicode database, every character
    clean_text translates and every whitespace character but the space is unprintable."""
    changed = {chr(code) for code in html_module._TRANSLATE}
    changed |= {chr(code) for code in range(0x110000) if chr(code).isspace()} - {" "}
    assert not [char for char in changed if char.isprintable()]


# Spaces single, double and at the edges, other whitespace, what _TRANSLATE maps
# (C1, soft hyphen, zero-width space, BOM, controls, a lone surrogate), a combining
# accent for NFC, and ordinary letters within and beyond Latin-1.
@given(
    st.text(alphabet=" \t\n\xa0\u2009\u3000\x1c\x85\x93\xad\u200b\ufeff\x00\x7f\ud800\u0301eaä–„")
)
def test_clean_text_gives_what_the_general_way_gives(text: str) -> None:
    assert clean_text(text) == _clean_text_in_general(text)


def test_plain_to_text_decodes_double_escaped_entities() -> None:
    assert plain_to_text("K&auml;se &amp; Brot\n\n  ") == "Käse & Brot"


def test_truncate() -> None:
    assert truncate("kurz", 10) == "kurz"
    assert truncate("eins zwei drei vier", 12) == "eins zwei…"
    assert truncate("eins, zwei drei", 6) == "eins…"
    assert truncate("x" * 30, 10) == "x" * 10 + "…"


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("Kurz und knapp. Dann mehr.", "Kurz und knapp."),
        ("Wer hat gewonnen? Das Team aus Köln.", "Wer hat gewonnen?"),
        ("Am 9. November fiel die Mauer. Viele feierten.", "Am 9. November fiel die Mauer."),
        ("Eine Meldung ohne Punkt", "Eine Meldung ohne Punkt"),
        ("Version 2.5 ist da.", "Version 2.5 ist da."),
    ],
)
def test_title_from_text(text: str, title: str) -> None:
    assert title_from_text(text) == title


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("de-DE", "de"), ("en_US", "en"), ("IT-it", "it"), (" DE ", "de"), ("gsw", "gsw"),
     ("", None), ("x-default", None), ("123", None), (None, None), (["de"], None)],
)  # fmt: skip
def test_normalize_language(tag: object, expected: str | None) -> None:
    assert normalize_language(tag) == expected


# -- what the store's indexes can take ------------------------------------------------


def test_guids_and_links_too_long_for_an_index_are_kept_storable() -> None:
    """PostgreSQL refuses btree entries over ~2.7 KB: such a feed could never be stored."""
    signed = "https://news.example.de/a?sig=" + "".join(f"{n:04x}" for n in range(700))
    long_guid = "urn:uuid:" + "x" * 3000
    items = (
        f"<item><title>Mit langer GUID</title><guid isPermaLink='false'>{long_guid}</guid>"
        "<link>https://news.example.de/kurz</link></item>"
        f"<item><title>Mit langem Link</title><link>{signed.replace('&', '&amp;')}</link></item>"
    )
    feed = parse(f"<rss version='2.0'><channel><title>T</title>{items}</channel></rss>".encode())
    by_title = {entry.title: entry for entry in feed.entries}
    guided, linked = by_title["Mit langer GUID"], by_title["Mit langem Link"]
    assert guided.guid == "sha256:" + hashlib.sha256(long_guid.encode()).hexdigest()
    assert guided.canonical_url == "https://news.example.de/kurz"
    assert linked.guid == "sha256:" + hashlib.sha256(signed.encode()).hexdigest()
    assert (linked.url, linked.canonical_url) == (signed, None)
    short = parse(
        b"<rss version='2.0'><channel><item><title>K</title><guid>k-1</guid></item></channel></rss>"
    )
    assert not short.entries[0].guid.startswith("sha256:")
