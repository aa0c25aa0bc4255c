"""STARTTLS, implicit TLS and AUTH against a real aiosmtpd server with a self-signed certificate.

The client trusts the certificate through SSL_CERT_FILE, the way an operator
points OpenSSL at a private CA; hostname and certificate are still verified.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from smtpserver import SmtpServer

from aggregator.config import SmtpSettings
from aggregator.mail.sender import Outcome, Sender, SmtpConfigError, SmtpRefused


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth: Any
) -> AuthResult:
    ok = isinstance(auth, LoginPassword) and (auth.login, auth.password) == (b"digest", b"geheim")
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def context(cert: Path, key: Path) -> ssl.SSLContext:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    return server_context


@pytest.fixture
def trusted(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    return certificate


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = "Tägliche Übersicht"
    mail["From"] = "digest@example.org"
    mail["To"] = "leser@example.org"
    mail.set_content("Grüße")
    return mail


@pytest.fixture
def starttls_server(trusted: tuple[Path, Path]) -> Iterator[tuple[int, Inbox]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context(*trusted),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    yield port, inbox
    controller.stop()


def settings(port: int, security: str, **extra: Any) -> SmtpSettings:
    return SmtpSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "security": security,
            "from": "digest@example.org",
            "username": "digest",
            "password_env": "TEST_SMTP_PASSWORD",
            **extra,
        }
    )


def test_starttls_and_login(starttls_server: tuple[int, Inbox]) -> None:
    port, inbox = starttls_server
    environ = {"TEST_SMTP_PASSWORD": "geheim"}
    with Sender(settings(port, "starttls"), environ) as sender:
        assert sender.send(message(), "leser@example.org").outcome is Outcome.SENT
        assert sender.send(message(), "leser2@example.org").outcome is Outcome.SENT
        assert sender.connections == 1
    assert len(inbox.messages) == 2


def test_a_wrong_password_is_refused_without_sending(starttls_server: tuple[int, Inbox]) -> None:
    port, inbox = starttls_server
    with (
        Sender(settings(port, "starttls"), {"TEST_SMTP_PASSWORD": "falsch"}) as sender,
        pytest.raises(SmtpRefused, match=r"refused the connection or login: 535"),
    ):
        sender.send(message(), "leser@example.org")
    assert inbox.messages == []


def test_plain_connection_to_a_starttls_only_server_is_not_sent(
    starttls_server: tuple[int, Inbox],
) -> None:
    port, inbox = starttls_server
    with (
        Sender(settings(port, "none", username=None, password_env=None), {}) as sender,
        pytest.raises(SmtpRefused, match=r"refused the sender digest@example.org: 530"),
    ):
        sender.send(message(), "leser@example.org")
    assert inbox.messages == []


def test_implicit_tls(trusted: tuple[Path, Path]) -> None:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=context(*trusted))
    controller.start()
    try:
        with Sender(settings(port, "tls", username=None, password_env=None), {}) as sender:
            assert sender.send(message(), "leser@example.org").outcome is Outcome.SENT
    finally:
        controller.stop()
    assert len(inbox.messages) == 1


def test_an_untrusted_certificate_is_not_accepted(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context(*certificate),
        require_starttls=True,
    )
    controller.start()
    try:
        with Sender(settings(port, "starttls", username=None, password_env=None), {}) as sender:
            result = sender.send(message(), "leser@example.org")
    finally:
        controller.stop()
    assert result.outcome is not Outcome.SENT
    assert "CERTIFICATE_VERIFY_FAILED" in result.answer
    assert inbox.messages == []


@pytest.mark.parametrize(
    "host", ["mail.example.org", "192.0.2.25", "2001:db8::25", "localhost.example"]
)
def test_a_login_without_tls_to_another_host_is_refused(host: str) -> None:
    """AUTH PLAIN/LOGIN without TLS is the password in base64 for anyone on the path."""
    with pytest.raises(SmtpConfigError) as refused:
        Sender(settings(25, "none", host=host), {"TEST_SMTP_PASSWORD": "geheim"})
    error = str(refused.value)
    assert error.startswith("smtp.security: 'none' would send the password of 'digest'")
    assert host in error and "'starttls' or 'tls'" in error
    assert "\n" not in error and "geheim" not in error
    # Without a login nothing secret travels: a plain relay stays allowed.
    Sender(settings(25, "none", host=host, username=None, password_env=None), {})


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "::1", "127.0.0.2"])
def test_a_login_without_tls_over_loopback_is_allowed(host: str) -> None:
    Sender(settings(25, "none", host=host), {"TEST_SMTP_PASSWORD": "geheim"})


def test_a_login_without_tls_to_a_relay_on_this_machine_sends() -> None:
    with (
        SmtpServer(password="geheim") as smtp,
        Sender(settings(smtp.port, "none"), {"TEST_SMTP_PASSWORD": "geheim"}) as sender,
    ):
        assert sender.send(message(), "leser@example.org").outcome is Outcome.SENT
        assert smtp.recipients() == ["leser@example.org"]
