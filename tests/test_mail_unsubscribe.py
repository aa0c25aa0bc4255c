"""Leaving through the link in a received mail, served by the real HTTP endpoint (uvicorn)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from mailsetup import END, NOW, START, fill, settings, subscribe
from smtpserver import SmtpServer
from starlette.applications import Starlette

from aggregator.mail.service import send_due
from aggregator.store import Store
from aggregator.store.mail import MailStore
from aggregator.web import create_app


class WebServer:
    """An app served by uvicorn in a thread, on a loopback socket bound beforehand.

    Binding first tells the port before the app exists, so the mails can carry it.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock

    def serve(self, app: object, log_level: str = "warning") -> WebServer:
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))  # type: ignore[arg-type]
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        return self

    def __enter__(self) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@dataclass
class Mailed:
    """Subscribers who got the digest, the one-click URL of each, and the app to serve."""

    store: Store
    app: Starlette
    socket: socket.socket
    urls: dict[str, str]

    def status(self, email: str) -> str:
        return {s.email: s.status for s in MailStore(self.store).subscribers()}[email]


def mailed(smtp: SmtpServer, tmp_path: Path, *emails: str) -> Mailed:
    """Mail the digest to `emails` through the SMTP server, links pointing at a bound socket."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = settings(tmp_path, smtp_port=smtp.port, base_url=base_url)
    store = Store(config.database_url)
    fill(store)
    subscribe(store, *emails)
    assert send_due(store, config, config.digests[0], START, END, NOW).sent == len(emails)
    urls = {}
    for email in emails:
        (message,) = smtp.messages_to(email)
        (urls[email],) = re.findall(r"<(http[^>]+)>", message["List-Unsubscribe"])
    return Mailed(store, create_app(config, store), sock, urls)


def test_one_click_unsubscribe_from_a_received_mail(smtp: SmtpServer, tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = settings(tmp_path, smtp_port=smtp.port, base_url=f"http://127.0.0.1:{port}")
    store = Store(config.database_url)
    fill(store)
    subscribe(store, "anna@example.org", "bob@example.org")
    mail = MailStore(store)
    digest = config.digests[0]
    assert send_due(store, config, digest, START, END, NOW).sent == 2
    (anna_mail,) = smtp.messages_to("anna@example.org")
    (bob_mail,) = smtp.messages_to("bob@example.org")
    anna_url = re.findall(r"<(http[^>]+)>", anna_mail["List-Unsubscribe"])[0]
    bob_url = re.findall(r"<(http[^>]+)>", bob_mail["List-Unsubscribe"])[0]
    html = anna_mail.get_body(("html",))
    assert html is not None
    assert f'href="{anna_url}"' in html.get_content()

    with WebServer(sock).serve(create_app(config, store)), httpx.Client(timeout=10) as client:
        # GET only asks: a link scanner opening it changes nothing.
        page = client.get(anna_url)
        assert page.status_code == 200
        assert "Unsubscribe?" in page.text
        assert '<form method="post">' in page.text
        assert "Täglicher Überblick" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert all(s.status == "active" for s in mail.subscribers())

        # Tampered tokens: a clear page, nothing changed.
        head, mac = anna_url.rsplit("/", 1)[1].split(".")
        bob_id = bob_url.rsplit("/", 1)[1].split(".")[0]
        base = anna_url.rsplit("/", 1)[0]
        flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
        for bad in (f"{head}.{flipped}", f"{bob_id}.{mac}", "garbage", f"{head}"):
            answer = client.post(f"{base}/{bad}", content=b"List-Unsubscribe=One-Click")
            assert answer.status_code == 400, bad
            assert "not valid" in answer.text
            assert client.get(f"{base}/{bad}").status_code == 400
        assert all(s.status == "active" for s in mail.subscribers())

        # RFC 8058 one-click: the mail client POSTs this body to the header's URL.
        done = client.post(
            anna_url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200
        assert "Unsubscribed" in done.text
        assert "anna@example.org" in done.text
        again = client.get(anna_url)
        assert "Already unsubscribed" in again.text

    states = {s.email: s.status for s in mail.subscribers()}
    assert states == {"anna@example.org": "unsubscribed", "bob@example.org": "active"}
    day = timedelta(days=1)
    fill(store, START + day)
    following = send_due(store, config, digest, START + day, END + day, NOW + day)
    assert following.sent == 1
    assert len(smtp.messages_to("anna@example.org")) == 1
    assert len(smtp.messages_to("bob@example.org")) == 2


def test_only_a_one_click_body_unsubscribes(smtp: SmtpServer, tmp_path: Path) -> None:
    """RFC 8058: the POST says ``List-Unsubscribe=One-Click``, form-encoded; nothing else acts."""
    people = [f"p{n}@example.org" for n in range(5)]
    world = mailed(smtp, tmp_path, *people)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    multipart = {"Content-Type": "multipart/form-data; boundary=b0undary"}
    one_click_part = (
        b'--b0undary\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--b0undary--\r\n"
    )
    refused = [
        ("GET", {}, b"", 200),
        ("HEAD", {}, b"", 200),
        ("POST", {}, b"", 400),
        ("POST", form, b"foo=bar", 400),
        ("POST", form, b"List-Unsubscribe=Yes", 400),
        ("POST", {"Content-Type": "text/plain"}, b"List-Unsubscribe=One-Click", 400),
    ]
    accepted = [
        (people[1], form, b"List-Unsubscribe=One-Click"),
        (people[2], form, b"x=1&List-Unsubscribe=One-Click"),
        (people[3], multipart, one_click_part),
    ]
    with WebServer(world.socket).serve(world.app), httpx.Client(timeout=10) as client:
        url = world.urls[people[0]]
        for method, headers, body, status in refused:
            answer = client.request(method, url, headers=headers, content=body)
            assert answer.status_code == status, (method, headers, body)
            assert world.status(people[0]) == "active", (method, headers, body)
        # A refused POST offers the button, which posts the right body.
        page = client.post(url, content=b"foo=bar", headers=form).text
        assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page

        for email, headers, body in accepted:
            answer = client.post(world.urls[email], headers=headers, content=body)
            assert answer.status_code == 200, (headers, body)
            assert "Unsubscribed" in answer.text
            assert world.status(email) == "unsubscribed"
    assert [world.status(email) for email in people] == [
        "active",
        "unsubscribed",
        "unsubscribed",
        "unsubscribed",
        "active",
    ]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_tokens_stay_out_of_the_access_log(smtp: SmtpServer, tmp_path: Path) -> None:
    world = mailed(smtp, tmp_path, "anna@example.org")
    url = world.urls["anna@example.org"]
    subscriber_id, mac = url.rsplit("/", 1)[1].split(".")
    access = logging.getLogger("uvicorn.access")
    lines = _Lines()
    with WebServer(world.socket).serve(world.app, log_level="info"), httpx.Client() as client:
        access.addHandler(lines)
        try:
            assert client.get(url).status_code == 200
            assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
            assert client.get(url.rsplit("/", 1)[0] + "/garbage").status_code == 400
            # Paths that do not route still carry a valid token: hidden as well.
            base = url.split("/unsubscribe/")[0]
            token = f"{subscriber_id}.{mac}"
            for odd in (f"/unsubscribe//{token}", f"/UNSUBSCRIBE/{token}"):
                assert client.get(base + odd).status_code == 404
            assert client.get(f"{base}/x?next=%2Funsubscribe%2F{token}").status_code == 404
        finally:
            access.removeHandler(lines)
    assert len(lines.lines) == 6, lines.lines
    assert not [line for line in lines.lines if mac in line]
    assert f'"GET /unsubscribe/{subscriber_id}.[hidden] HTTP/1.1" 200' in lines.lines[0]
    assert f'"POST /unsubscribe/{subscriber_id}.[hidden] HTTP/1.1" 200' in lines.lines[1]
    assert '"GET /unsubscribe/[hidden] HTTP/1.1" 400' in lines.lines[2]
