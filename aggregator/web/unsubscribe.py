"""Leaving a digest in one step: the links and List-Unsubscribe URLs in every mail.

GET shows a confirmation page with a button (link scanners and previews
fetch URLs, so a GET must never unsubscribe); POST unsubscribes at once, as
RFC 8058 one-click asks (the mail client posts ``List-Unsubscribe=One-Click``).
A token that is malformed or not ours changes nothing and says so.
"""

from __future__ import annotations

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


async def confirm(request: Request) -> HTMLResponse:
    checked = _check(request)
    if checked is None:
        return _invalid()
    subscriber = checked.subscriber
    name = escape(_digest_title(request, subscriber))
    if subscriber.status == UNSUBSCRIBED:
        return _page(
            "Already unsubscribed",
            f"<p>{escape(subscriber.email)} no longer gets <strong>{name}</strong>.</p>",
        )
    return _page(
        "Unsubscribe?",
        f"<p>Stop sending <strong>{name}</strong> to {escape(subscriber.email)}?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


async def unsubscribe(request: Request) -> HTMLResponse:
    checked = _check(request)
    if checked is None:
        return _invalid()
    subscriber = checked.subscriber
    if subscriber.id is not None:
        checked.mail.unsubscribe(subscriber.id, datetime.now(UTC), "unsubscribed by link")
    name = escape(_digest_title(request, subscriber))
    return _page(
        "Unsubscribed",
        f"<p>{escape(subscriber.email)} will get no more <strong>{name}</strong>.</p>",
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/unsubscribe/{token}", confirm, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
    ]
