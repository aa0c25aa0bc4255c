"""Leaving through the link in a received mail, served by the real HTTP endpoint (uvicorn)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from mailsetup import END, NOW, START, fill, settings, subscribe
from smtpserver import SmtpServer

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

    def serve(self, app: object) -> WebServer:
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # type: ignore[arg-type]
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
