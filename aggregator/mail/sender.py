"""SMTP with smtplib: one connection for many messages, paced, every answer classified.

Each send is MAIL FROM, RCPT TO, DATA done step by step (not `sendmail`) so
the server's final answer ("250 2.0.0 queued as 4F2A") can be recorded, and
so a refusal leaves the connection usable for the next recipient (RSET).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from types import TracebackType

from aggregator.config import SmtpSettings


class SmtpConfigError(Exception):
    """SMTP settings that cannot work (e.g. the password variable is unset); one line."""


class SmtpRefused(SmtpConfigError):
    """The server refused us, not a recipient: a 5xx to connecting, EHLO, login or MAIL FROM.

    Every message of the run would get the same answer (a wrong password, a
    sender address the relay does not accept), so it ends the run like a
    configuration error instead of counting against each subscriber.
    """

    def __init__(self, host: str, step: str, answer: str) -> None:
        super().__init__(
            f"SMTP server {host} refused {step}: {answer}; nothing more was sent, "
            "the remaining deliveries stay queued"
        )


class Outcome(enum.Enum):
    SENT = "sent"
    # 4xx, or the connection failed: try again later.
    TEMPORARY = "temporary"
    # 5xx: this message to this recipient will never be accepted.
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    # The server's answer ("250 2.0.0 Ok: queued as 4F2A") or the connection error.
    answer: str
    # True when no connection could be opened (refused, timed out, 4xx to the
    # greeting or login); a connection lost during one message is that message's failure.
    connection: bool = False


def _answer(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}".strip()


def _classify(code: int, message: bytes | str) -> Result:
    outcome = Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY
    return Result(outcome, _answer(code, message))


def password(smtp: SmtpSettings, environ: Mapping[str, str] = os.environ) -> str | None:
    if smtp.password_env is None:
        return None
    value = environ.get(smtp.password_env)
    if value is None:
        raise SmtpConfigError(
            f"smtp.password_env: environment variable {smtp.password_env} is not set"
        )
    return value


def _is_loopback(host: str) -> bool:
    """True for a loopback address or ``localhost`` (RFC 6761 keeps that name on this machine).

    Decided from the setting itself, not from DNS: an answer looked up now
    need not be the address connected to later.
    """
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_plaintext_login(smtp: SmtpSettings) -> None:
    """Refuse to log in without TLS to another machine: AUTH would carry the password in clear.

    (AUTH PLAIN and LOGIN are base64, readable by anyone on the path.) A relay
    on this machine, as in tests, is reached over loopback and stays allowed.
    """
    if smtp.security == "none" and smtp.username and not _is_loopback(smtp.host):
        raise SmtpConfigError(
            f"smtp.security: 'none' would send the password of {smtp.username!r} unencrypted "
            f"to {smtp.host}; use 'starttls' or 'tls' (a login without TLS is allowed only to "
            "a loopback host such as 127.0.0.1)"
        )


class Pacer:
    """At most `per_minute` messages a minute, evenly spaced (no bursts to trip a relay)."""

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / per_minute
        self.clock = clock
        self.sleep = sleep
        self._next: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self._next is not None and now < self._next:
            self.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


class Sender:
    """One SMTP session, opened on first use and reopened after it was lost."""

    def __init__(self, smtp: SmtpSettings, environ: Mapping[str, str] = os.environ) -> None:
        _check_plaintext_login(smtp)
        self.settings = smtp
        self.password = password(smtp, environ)
        self.envelope_from = parseaddr(smtp.sender)[1]
        self.pacer = Pacer(smtp.rate_per_minute)
        self._conn: smtplib.SMTP | None = None
        self.connections = 0

    def __enter__(self) -> Sender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connect(self) -> smtplib.SMTP:
        smtp = self.settings
        conn: smtplib.SMTP
        if smtp.security == "tls":
            context = ssl.create_default_context()
            conn = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
        else:
            conn = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        try:
            conn.ehlo()
            if smtp.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if smtp.username:
                try:
                    conn.login(smtp.username, self.password or "")
                except smtplib.SMTPResponseException:
                    raise
                except smtplib.SMTPException as exc:
                    # No AUTH, or no method smtplib knows ("AUTH GSSAPI" only):
                    # the settings do not fit this server, whenever we retry.
                    raise smtplib.SMTPNotSupportedError(str(exc)) from exc
        except BaseException:
            conn.close()
            raise
        self.connections += 1
        return conn

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.quit()
        except (smtplib.SMTPException, OSError):
            self._conn.close()
        self._conn = None

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def host(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _lost(self, exc: BaseException, what: str, connection: bool) -> Result:
        self._drop()
        reason = str(exc) or type(exc).__name__
        return Result(Outcome.TEMPORARY, f"connection to {self.host} {what}: {reason}", connection)

    def send(self, message: EmailMessage, recipient: str) -> Result:
        """Send one message to one recipient; never raises for what the server or network did.

        Except a refusal of the sender itself (SmtpRefused). A message that cannot
        be rendered raises ValueError before anything is sent.
        """
        data = message.as_bytes()  # composed with CRLF line ends (compose.MAIL_POLICY)
        self.pacer.wait()
        if self._conn is None:
            try:
                self._conn = self._connect()
            except smtplib.SMTPResponseException as exc:
                # Refused while connecting or logging in (e.g. 421 busy, 535 bad password).
                result = _classify(exc.smtp_code, exc.smtp_error)
                if result.outcome is Outcome.PERMANENT:
                    raise SmtpRefused(self.host, "the connection or login", result.answer) from None
                return Result(result.outcome, result.answer, connection=True)
            except smtplib.SMTPNotSupportedError as exc:
                # No AUTH (or no STARTTLS) offered: the settings do not fit this
                # server, and every retry for days would hear the same.
                reason = str(exc).rstrip(".")
                raise SmtpRefused(self.host, "the connection or login", reason) from None
            except (smtplib.SMTPException, OSError) as exc:
                return self._lost(exc, "failed", connection=True)
        try:
            return self._transaction(self._conn, data, recipient)
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped in the middle of this message: it goes again later; the
            # next message opens a new connection.
            return self._lost(exc, "lost during the message", connection=False)

    def _transaction(self, conn: smtplib.SMTP, data: bytes, recipient: str) -> Result:
        answer: bytes | str
        code, answer = conn.mail(self.envelope_from)
        if 500 <= code < 600:
            self._reset(conn, code)
            raise SmtpRefused(self.host, f"the sender {self.envelope_from}", _answer(code, answer))
        if code == 250:
            code, answer = conn.rcpt(recipient)
        if code in (250, 251):
            try:
                code, answer = conn.data(data)
            except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
                code, answer = exc.smtp_code, exc.smtp_error
            if code == 250:
                return Result(Outcome.SENT, _answer(code, answer))
        self._reset(conn, code)
        return _classify(code, answer)

    def _reset(self, conn: smtplib.SMTP, code: int) -> None:
        if code == 421:  # the server is closing the connection
            self._drop()
            return
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()
