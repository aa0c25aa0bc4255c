"""The message itself: headers, both parts, encoding, links, filters, signed tokens."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mailsetup import END, ENGLISH, GERMAN, NOW, START, fill, settings

from aggregator.mail import tokens
from aggregator.mail.compose import Mailing, compose, message_id, narrow, story_count
from aggregator.mail.service import mailing
from aggregator.store import Store
from aggregator.store.mail import Subscriber

SECRET = b"k" * 32


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self.styled = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if values.get("style"):
            self.styled += 1


@pytest.fixture
def period(tmp_path: Path) -> Mailing:
    config = settings(tmp_path)
    store = Store(config.database_url)
    fill(store)
    return mailing(store, config, config.digests[0], START, END, NOW)


def _person(**filters: object) -> Subscriber:
    return Subscriber(email="anna@example.org", digest="daily", name="Anna Müller", id=7, **filters)  # type: ignore[arg-type]


def _message(period: Mailing, person: Subscriber | None = None) -> EmailMessage:
    person = person or _person()
    msgid = message_id("daily", START, END, person.email, "example.org")
    built = compose(period, person, msgid=msgid, token=tokens.sign(SECRET, person))
    # Through the wire format and back, as a receiving client sees it.
    parsed = email.message_from_bytes(built.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_headers_are_encoded_and_complete(period: Mailing) -> None:
    message = _message(period)
    raw = message.as_bytes()
    assert raw.isascii(), "every header and part must be 7-bit on the wire"
    assert message["Subject"] == "Täglicher Überblick: 3 stories, 2026-11-25"
    assert b"=?utf-8?" in raw.split(b"\n\n")[0]
    assert message["From"].addresses[0].display_name == "Nachrichten-Überblick"
    assert message["To"].addresses[0].display_name == "Anna Müller"
    assert message["To"].addresses[0].addr_spec == "anna@example.org"
    assert message["Reply-To"] == "redaktion@example.org"
    assert message["Date"].datetime == NOW
    assert message["Message-ID"] == message_id(
        "daily", START, END, "anna@example.org", "example.org"
    )
    assert re.fullmatch(r"<daily\.202611250500\.[0-9a-f]{20}@example\.org>", message["Message-ID"])
    assert "anna" not in message["Message-ID"]
    assert message["List-Id"] == "Täglicher Überblick <daily.example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Precedence"] == "bulk"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # No mailto: without `smtp.unsubscribe_mailto` (nothing reads the Reply-To mailbox).
    links = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    assert links == ["https://news.example.org/unsubscribe/" + tokens.sign(SECRET, _person())]


def test_a_configured_unsubscribe_mailbox_is_advertised_first(period: Mailing) -> None:
    smtp = period.smtp.model_copy(update={"unsubscribe_mailto": "Abmeldung <ab@example.org>"})
    message = _message(replace(period, smtp=smtp))
    token = tokens.sign(SECRET, _person())
    assert re.findall(r"<([^>]+)>", message["List-Unsubscribe"]) == [
        f"mailto:ab@example.org?subject=unsubscribe%20{token}",
        f"https://news.example.org/unsubscribe/{token}",
    ]


def test_message_id_is_deterministic_per_period_and_recipient() -> None:
    first = message_id("daily", START, END, "anna@example.org", "example.org")
    assert first == message_id("daily", START, END, "anna@example.org", "example.org")
    assert first != message_id("daily", START, END, "bob@example.org", "example.org")
    assert first != message_id("daily", START + timedelta(days=1), END, "anna@example.org", "x")
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", first)


def test_both_parts_read_well_and_escape_feed_text(period: Mailing) -> None:
    message = _message(period)
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    text = plain.get_content()
    assert GERMAN in text.replace("\n     ", " ")
    assert ENGLISH in text
    assert "https://www.tagesschau.de/inland/klimageld-100.html" in text
    assert "javascript:" not in text
    unsubscribe = "https://news.example.org/unsubscribe/" + tokens.sign(SECRET, _person())
    assert unsubscribe in text

    markup = html.get_content()
    assert "Bundestag beschließt „Klimageld“" in markup
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    parser = _Links()
    parser.feed(markup)
    assert parser.hrefs, "stories link to the outlets"
    assert all(href.startswith(("https://", "http://")) for href in parser.hrefs)
    assert unsubscribe in parser.hrefs
    assert not parser.tags & {"img", "script", "iframe", "link", "object", "form"}
    assert "table" in parser.tags
    assert parser.styled > 10, "CSS must be inlined into style attributes"
    assert "prefers-color-scheme: dark" in markup


def test_filters_narrow_the_digest(period: Mailing) -> None:
    assert story_count(period, _person()) == 3
    only_bbc = narrow(period.digest, _person(outlets=("BBC.co.uk",)))
    assert [[e.outlet for e in c.entries] for c in only_bbc.clusters] == [["bbc.co.uk"]]
    german = narrow(period.digest, _person(language="de"))
    assert all(e.language == "de" for c in german.clusters for e in c.entries)
    assert len(german.clusters) == 3
    assert story_count(period, _person(min_outlets=2)) == 2
    assert story_count(period, _person(min_outlets=3)) == 1
    assert story_count(period, _person(max_stories=1)) == 1
    assert story_count(period, _person(outlets=("nobody.example",))) == 0
    two = _message(period, _person(min_outlets=2)).get_body(("plain",))
    assert two is not None
    text = two.get_content()
    assert "Showing 2 of 3 stories" in text
    assert "Räumung" not in text


def test_tokens_are_unforgeable() -> None:
    anna = _person()
    token = tokens.sign(SECRET, anna)
    tokens.verify(SECRET, token, anna)
    head, mac = token.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    other = Subscriber(email="bob@example.org", digest="daily", id=8)
    bad = [
        f"{head}.{flipped}",
        f"8.{mac}",
        token + "x",
        mac,
        "",
        "7.",
    ]
    for candidate in bad:
        with pytest.raises(tokens.BadToken):
            target = other if candidate.startswith("8.") else anna
            tokens.verify(SECRET, candidate, target)
    with pytest.raises(tokens.BadToken):
        tokens.verify(b"another key", token, anna)
    # The same id with another address (a reused row) does not honour the old link.
    with pytest.raises(tokens.BadToken):
        tokens.verify(SECRET, token, Subscriber(email="new@example.org", digest="daily", id=7))
