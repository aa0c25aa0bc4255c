"""Leaving a digest in one step: the links and List-Unsubscribe URLs in every mail.

GET shows a confirmation page with a button (link scanners and previews
fetch URLs, so a GET must never unsubscribe); POST unsubscribes at once, as
RFC 8058 one-click asks, when its form body is ``List-Unsubscribe=One-Click``
(what mail clients and the page's button send); any other POST only shows
the button again. A token that is malformed or not ours changes nothing and
says so. Tokens are kept out of uvicorn's access log.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from aggregator.config import Settings
from aggregator.mail import tokens
from aggregator.store import Store
from aggregator.store.mail import UNSUBSCRIBED, MailStore, Subscriber

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}</title>
<style>
body {{ font: 1rem/1.5 system-ui, sans-serif; max-width: 34rem; margin: 3rem auto;
        padding: 0 1rem; }}
button {{ font: inherit; padding: .5rem 1.2rem; cursor: pointer; }}
</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


# The token of an unsubscribe path, after the subscriber id it names (kept for
# tracing a request); the rest is the MAC, as good as the link itself.
# Any case, repeated or percent-encoded slashes (a 404 or a `next=` parameter
# still carries a valid token), percent-escapes inside the token.
_TOKEN_IN_PATH = re.compile(
    r"((?:/|%2F)unsubscribe(?:/|%2F)+)(\d+(?:\.|%2E))?(?:[^/?#&\s\"%]|%(?!2F)[0-9A-F]{2})+",
    re.IGNORECASE,
)


class _HideTokens(logging.Filter):
    """Access-log lines say ``POST /unsubscribe/7.[hidden]``, not the whole token.

    Logs are kept longer, and read by more people, than the mail that carried
    the link; a token in them would let any reader unsubscribe that subscriber.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_PATH.sub(r"\1\2[hidden]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def _hide_tokens_in_access_log() -> None:
    """Filter uvicorn's access logger (once per process, whoever starts the server).

    A filter on the logger object survives uvicorn's own logging set-up
    (`logging.config.dictConfig` replaces handlers, not filters).
    """
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(known, _HideTokens) for known in access.filters):
        access.addFilter(_HideTokens())


@dataclass(frozen=True)
class _Checked:
    mail: MailStore
    subscriber: Subscriber


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=escape(title), body=body), status_code=status, headers=_HEADERS
    )


def _invalid() -> HTMLResponse:
    return _page(
        "This unsubscribe link is not valid",
        "<p>The link may have been shortened or changed on its way to you. Nothing was "
        "changed. Please use the link from the most recent mail.</p>",
        status=400,
    )


def _check(request: Request) -> _Checked | None:
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    mail = MailStore(store)
    token = request.path_params["token"]
    try:
        subscriber = mail.subscriber(tokens.subscriber_id(token))
        if subscriber is None:
            return None
        tokens.verify(tokens.load_secret(settings.smtp, mail), token, subscriber)
    except tokens.BadToken:
        return None
    return _Checked(mail, subscriber)


def _digest_title(request: Request, subscriber: Subscriber) -> str:
    settings: Settings = request.app.state.settings
    for digest in settings.digests:
        if digest.name == subscriber.digest:
            return digest.title or digest.name
    return subscriber.digest


def _confirmation(request: Request, subscriber: Subscriber, status: int = 200) -> HTMLResponse:
    name = escape(_digest_title(request, subscriber))
    if subscriber.status == UNSUBSCRIBED:
        return _page(
            "Already unsubscribed",
            f"<p>{escape(subscriber.email)} no longer gets <strong>{name}</strong>.</p>",
            status,
        )
    return _page(
        "Unsubscribe?",
        f"<p>Stop sending <strong>{name}</strong> to {escape(subscriber.email)}?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
        status,
    )


async def _one_click(request: Request) -> bool:
    """Whether the body is RFC 8058's ``List-Unsubscribe=One-Click``.

    Form-encoded either way RFC 8058 allows (urlencoded, multipart); a body of
    another type parses as an empty form. No file parts: nothing here takes one.
    """
    async with request.form(max_files=0) as form:
        return form.get("List-Unsubscribe") == "One-Click"


async def confirm(request: Request) -> HTMLResponse:
    checked = _check(request)
    if checked is None:
        return _invalid()
    return _confirmation(request, checked.subscriber)


async def unsubscribe(request: Request) -> HTMLResponse:
    checked = _check(request)
    if checked is None:
        return _invalid()
    subscriber = checked.subscriber
    if not await _one_click(request):
        # Not a one-click request (a scanner, a mistyped client): change nothing,
        # and offer the button, which posts the right body.
        return _confirmation(request, subscriber, status=400)
    if subscriber.id is not None:
        checked.mail.unsubscribe(subscriber.id, datetime.now(UTC), "unsubscribed by link")
    name = escape(_digest_title(request, subscriber))
    return _page(
        "Unsubscribed",
        f"<p>{escape(subscriber.email)} will get no more <strong>{name}</strong>.</p>",
    )


def routes() -> list[BaseRoute]:
    """The unsubscribe endpoints; serving them also hides their tokens in the access log."""
    _hide_tokens_in_access_log()
    return [
        Route("/unsubscribe/{token}", confirm, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
    ]
