"""Unsubscribe tokens: a subscriber id and an HMAC over who they are, no login needed.

The MAC covers the id, the address and the digest, so a token cannot be
turned into another subscriber's (changing the id breaks the MAC) and an id
reused after a removal does not honour an old link. The key comes from the
environment or, when unset there, from the database (created once).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping

from aggregator.config import SmtpSettings
from aggregator.store.mail import MailStore, Subscriber
from aggregator.store.schema import row_id

SECRET_NAME = "unsubscribe"


class BadToken(ValueError):
    """A token that is malformed or was not signed with our key."""


def _mac(secret: bytes, subscriber_id: int, email: str, digest: str) -> str:
    message = f"unsubscribe\n{subscriber_id}\n{email}\n{digest}".encode()
    # 128 bits of HMAC-SHA256: unguessable, and short enough to keep links on one line.
    mac = hmac.new(secret, message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def sign(secret: bytes, subscriber: Subscriber) -> str:
    """The token for a stored subscriber: ``<id>.<mac>``, URL-safe."""
    if subscriber.id is None:
        raise ValueError("only stored subscribers have unsubscribe tokens")
    return f"{subscriber.id}.{_mac(secret, subscriber.id, subscriber.email, subscriber.digest)}"


def subscriber_id(token: str) -> int:
    """The id a token claims, before it is checked; BadToken if it has no such shape.

    Only ASCII: ``"²".isdigit()`` is true but `int` refuses it, and
    `hmac.compare_digest` refuses non-ASCII text.
    """
    head, dot, mac = token.partition(".")
    if not (dot and mac and token.isascii() and head.isdigit()):
        raise BadToken("malformed token")
    number = row_id(head)
    if number is None:  # beyond any row id
        raise BadToken("no such subscriber")
    return number


def verify(secret: bytes, token: str, subscriber: Subscriber) -> None:
    """Raise BadToken unless `token` was signed for exactly this subscriber."""
    if subscriber.id is None or subscriber_id(token) != subscriber.id:
        raise BadToken("token for another subscriber")
    expected = _mac(secret, subscriber.id, subscriber.email, subscriber.digest)
    if not hmac.compare_digest(expected, token.partition(".")[2]):
        raise BadToken("signature does not match")


def load_secret(
    smtp: SmtpSettings, mail: MailStore, environ: Mapping[str, str] = os.environ
) -> bytes:
    """The signing key: the environment variable `smtp.secret_env`, else the stored one."""
    value = environ.get(smtp.secret_env) or mail.secret(SECRET_NAME)
    return value.encode("utf-8")
