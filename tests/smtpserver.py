"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts.

It can be scripted per recipient to answer a 4xx or 5xx, or to drop the
connection, for the next attempts:

    with SmtpServer() as smtp:
        smtp.script("bad@example.org", "550 5.1.1 no such user")   # once
        smtp.always("gone@example.org", "550 5.1.1 gone")
        smtp.script("slow@example.org", "451 4.7.1 greylisted", "drop")
        ... send to 127.0.0.1:smtp.port ...
        smtp.messages_to("anna@example.org")  # parsed EmailMessages

Server-wide: `SmtpServer(password="x")` offers AUTH (any user, that password),
`smtp.sender_answer = "553 ..."` refuses every MAIL FROM, and `delay` slows
each DATA down (to make two senders overlap).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

DROP = "drop"


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_EHLO(
        self, smtp: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.server.lock:
            self.server.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, smtp: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.server.sender_answer is not None:
            return self.server.sender_answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, smtp: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        answer = self.server.answer_for(address)
        if answer == DROP:
            smtp.transport.abort()
            return "421 4.4.2 dropped"
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.server.delay)
        with self.server.lock:
            self.server.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
            number = len(self.server.received)
        return f"250 2.0.0 Ok: queued as M{number:05d}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    def __init__(
        self, *, password: str | None = None, delay: float = 0.0, only_gssapi: bool = False
    ) -> None:
        """`only_gssapi`: AUTH offers GSSAPI alone, a mechanism smtplib cannot speak."""
        self.lock = threading.Lock()
        self.delay = delay
        self.sender_answer: str | None = None
        self.received: list[Received] = []
        # EHLO greetings seen: one per SMTP connection.
        self.sessions = 0
        self._scripts: dict[str, deque[str]] = {}
        self._always: dict[str, str] = {}
        self.port = _free_port()
        auth: dict[str, Any] = {}
        if password is not None:

            def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
                ok = isinstance(data, LoginPassword) and data.password == password.encode()
                return AuthResult(success=ok, handled=False)

            auth = {"authenticator": check, "auth_require_tls": False}
        handler = _Handler(self)
        if only_gssapi:

            async def auth_GSSAPI(server: Any, args: list[str]) -> Any:
                return None  # never reached: smtplib gives up before trying it

            handler.auth_GSSAPI = auth_GSSAPI  # type: ignore[attr-defined]
            auth["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
        self._controller = Controller(handler, hostname="127.0.0.1", port=self.port, **auth)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.stop()

    def script(self, address: str, *answers: str) -> None:
        """Answer the next attempts to `address` with these (an SMTP reply or "drop")."""
        with self.lock:
            self._scripts.setdefault(address.lower(), deque()).extend(answers)

    def always(self, address: str, answer: str) -> None:
        with self.lock:
            self._always[address.lower()] = answer

    def answer_for(self, address: str) -> str | None:
        with self.lock:
            queue = self._scripts.get(address.lower())
            if queue:
                return queue.popleft()
            return self._always.get(address.lower())

    def messages_to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [r.parsed() for r in self.received if address in r.recipients]

    def recipients(self) -> list[str]:
        with self.lock:
            return [rcpt for r in self.received for rcpt in r.recipients]
