"""One digest period as one subscriber's email: pure functions, no I/O.

The stories are the file digest's (same clusters, same ranking, same
escaping through `digest_view`), narrowed by the subscriber's filters. The
HTML part is a table layout with its CSS inlined, because Outlook and Gmail
drop or ignore most <style> rules; the <style> block stays for clients that
honour the dark-mode media query.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr
from typing import cast
from urllib.parse import quote

import css_inline
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from aggregator.config import DigestSettings, SmtpSettings
from aggregator.digest.render import DigestView, digest_view, zone
from aggregator.digest.select import rank_key
from aggregator.models import Cluster, Digest
from aggregator.store.mail import Subscriber

_ENV = Environment(
    loader=PackageLoader("aggregator", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), disabled_extensions=("txt.j2",)),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_INLINER = css_inline.CSSInliner(keep_style_tags=True)


class _TokenListHeader(UnstructuredHeader):
    """``<mailto:...>, <https://...>`` or ``<id@host>``: folded only after commas, never encoded.

    The standard folder turns a long unbreakable ASCII token (a signed URL, a
    Message-ID) into RFC 2047 encoded words or a continuation line, which
    mail clients do not read as a link or an id.
    """

    def fold(self, *, policy: Policy) -> str:
        text = str(self)
        if not text.isascii():
            return str(super().fold(policy=policy))  # type: ignore[misc]
        links = [link.strip() for link in text.split(",")]
        separator = "," + policy.linesep + " "
        return f"{self.name}: {separator.join(links)}{policy.linesep}"  # type: ignore[attr-defined]


_HEADERS = HeaderRegistry()
# The registry mixes BaseHeader in; typeshed does not know UnstructuredHeader is meant for that.
for _name in ("list-unsubscribe", "message-id"):
    _HEADERS.map_to_type(_name, cast("type[BaseHeader]", _TokenListHeader))
# CRLF line ends and 78-character folding, as SMTP wants them.
MAIL_POLICY = SMTP.clone(header_factory=_HEADERS)


@dataclass(frozen=True)
class Mailing:
    """What every recipient of one digest period shares."""

    digest: Digest
    settings: DigestSettings
    smtp: SmtpSettings
    base_url: str
    now: datetime


def sender_domain(smtp: SmtpSettings) -> str:
    """The domain of the From address, for Message-IDs and List-Id."""
    _, address = parseaddr(smtp.sender)
    return address.rpartition("@")[2] or "localhost"


def message_id(digest: str, start: datetime, end: datetime, email: str, domain: str) -> str:
    """The same id for the same (digest period, recipient), so receivers can drop a repeat.

    The address is hashed: a Message-ID travels further than the mail (replies, logs).
    """
    key = f"{digest}\n{start.isoformat()}\n{end.isoformat()}\n{email}"
    who = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    return f"<{digest}.{end:%Y%m%d%H%M}.{who}@{domain}>"


def _language_matches(language: str | None, wanted: str) -> bool:
    """``de`` matches ``de`` and ``de-AT``; an entry of unknown language matches nothing."""
    if not language:
        return False
    return language.lower() == wanted.lower() or language.lower().startswith(wanted.lower() + "-")


def narrow(digest: Digest, subscriber: Subscriber) -> Digest:
    """The digest as this subscriber reads it: only the outlets and language they chose.

    Entries of other outlets or languages are left out of each story (so the
    outlet count and the ranking are among the chosen outlets); a story with
    nothing left goes.
    """
    if not subscriber.outlets and not subscriber.language:
        return digest
    outlets = {name.casefold() for name in subscriber.outlets}
    kept = []
    for cluster in digest.clusters:
        entries = [
            entry
            for entry in cluster.entries
            if (not outlets or entry.outlet.casefold() in outlets)
            and (not subscriber.language or _language_matches(entry.language, subscriber.language))
        ]
        if entries:
            ids = {entry.id for entry in entries}
            matches = {key: m for key, m in cluster.matches.items() if key in ids}
            kept.append(Cluster(id=cluster.id, entries=entries, matches=matches))
    return replace(digest, clusters=sorted(kept, key=rank_key))


def limits(settings: DigestSettings, subscriber: Subscriber) -> tuple[int, int]:
    """(max stories, min outlets): the subscriber's own, else the digest's."""
    return (
        subscriber.max_stories or settings.max_stories,
        subscriber.min_outlets or settings.min_outlets,
    )


def story_count(mailing: Mailing, subscriber: Subscriber) -> int:
    """How many stories this subscriber's mail would show (0: nothing to send)."""
    max_stories, min_outlets = limits(mailing.settings, subscriber)
    eligible = [c for c in narrow(mailing.digest, subscriber).clusters]
    return min(max_stories, sum(1 for c in eligible if len(c.outlets) >= min_outlets))


def view(mailing: Mailing, subscriber: Subscriber) -> DigestView:
    max_stories, min_outlets = limits(mailing.settings, subscriber)
    return digest_view(
        narrow(mailing.digest, subscriber),
        max_stories=max_stories,
        min_outlets=min_outlets,
        timezone=mailing.settings.timezone,
    )


def subject(digest: DigestView, period_end: datetime, timezone: str) -> str:
    count = f"{digest.shown} {'story' if digest.shown == 1 else 'stories'}"
    return f"{digest.title}: {count}, {period_end.astimezone(zone(timezone)):%Y-%m-%d}"


def unsubscribe_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/unsubscribe/{quote(token, safe='')}"


def unsubscribe_mailto(smtp: SmtpSettings, token: str) -> str | None:
    """The mailto: of List-Unsubscribe, only when `smtp.unsubscribe_mailto` is configured.

    Nothing in the program reads mail, so the address is a promise only its
    operator can keep (a mailbox someone processes). The From or Reply-To
    address would let a subscriber "unsubscribe" into an editor's inbox, or a
    no-reply address, and go on getting the digest; the one-click URL works
    without any of that.
    """
    if smtp.unsubscribe_mailto is None:
        return None
    _, address = parseaddr(smtp.unsubscribe_mailto)
    return f"mailto:{address}?subject={quote('unsubscribe ' + token, safe='')}"


def compose(mailing: Mailing, subscriber: Subscriber, *, msgid: str, token: str) -> EmailMessage:
    """The complete message for one subscriber, ready for SMTP."""
    digest = view(mailing, subscriber)
    link = unsubscribe_url(mailing.base_url, token)
    title = subject(digest, mailing.digest.period_end, mailing.settings.timezone)
    context = {
        "digest": digest,
        "subject": title,
        "unsubscribe_url": link,
        "recipient": subscriber.email,
    }
    text = _ENV.get_template("mail.txt.j2").render(**context)
    html = _INLINER.inline(_ENV.get_template("mail.html.j2").render(**context))

    message = EmailMessage(policy=MAIL_POLICY)
    message["Subject"] = title
    message["From"] = mailing.smtp.sender
    local, _, domain = subscriber.email.rpartition("@")
    message["To"] = Address(display_name=subscriber.name or "", username=local, domain=domain)
    if mailing.smtp.reply_to:
        message["Reply-To"] = mailing.smtp.reply_to
    message["Date"] = format_datetime(mailing.now)
    message["Message-ID"] = msgid
    list_name = f"{digest.title} <{mailing.digest.name}.{sender_domain(mailing.smtp)}>"
    message["List-Id"] = list_name
    mailto = unsubscribe_mailto(mailing.smtp, token)
    message["List-Unsubscribe"] = f"<{mailto}>, <{link}>" if mailto else f"<{link}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message["Precedence"] = "bulk"
    # Outlook/Exchange: no out-of-office replies to a digest.
    message["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    message.set_content(text, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message
