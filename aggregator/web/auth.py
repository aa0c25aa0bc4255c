"""Who may use the dashboard: passwords, sessions, CSRF, API tokens, login throttling.

- Passwords are stored as argon2id hashes (argon2-cffi), never in clear.
- The browser holds a signed session cookie (Starlette's SessionMiddleware:
  itsdangerous-signed, HttpOnly, SameSite=Lax, Secure behind https) with the
  user's name and a CSRF token; every POST must echo that token.
- Scripts send ``Authorization: Bearer TOKEN``; only the token's SHA-256 is
  stored, and a token opens the read-only JSON API, nothing else.
- A session is also a row in the `sessions` table: the cookie holds a random
  session id, the database its SHA-256. Every request looks the row up (one
  indexed query), so logging out, `users remove` and a password change (which
  delete the rows) end the session for every copy of the cookie, and a stolen
  cookie stops working when its owner logs out.
- Logins are counted per client address and per user name, in memory:
  enough for the single server process `web` runs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.store.dashboard import DashboardStore

_HASHER = PasswordHasher()
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# The longest user name (the `users.name` column).
NAME_LENGTH = 100
# Spent on a login for an unknown name too, so timing does not tell which names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A fresh API token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps of a token: enough to recognise it, useless to an attacker."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(conn: HTTPConnection) -> str | None:
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def session_user(conn: HTTPConnection) -> str | None:
    user = conn.session.get("user")
    return user if isinstance(user, str) else None


def api_user(conn: HTTPConnection, store: DashboardStore) -> str | None:
    """The logged-in editor, or the owner of a valid bearer token; None otherwise."""
    token = bearer_token(conn)
    if token is not None:
        return store.token_user(token_hash(token))
    return session_user(conn)


def log_in(
    session: MutableMapping[str, Any],
    store: DashboardStore,
    user: str,
    stored_hash: str,
    now: datetime,
    lifetime: timedelta,
) -> bool:
    """Start a fresh session (no fixation: nothing from before the login survives).

    `stored_hash` is the password hash the login was verified against: if the
    password changed (or the user was removed) meanwhile, there is no session,
    and False. A session this cookie held before ends with the new one's start.
    The row expires with the cookie (`lifetime` is SessionMiddleware's max_age).
    """
    replaced = session.get("sid")
    session.clear()
    session_id = secrets.token_urlsafe(32)
    started = store.start_session(
        user,
        stored_hash,
        token_hash(session_id),
        now,
        now + lifetime,
        replaces=token_hash(replaced) if isinstance(replaced, str) else None,
    )
    if not started:
        return False
    session["user"] = user
    session["sid"] = session_id
    session["csrf"] = secrets.token_urlsafe(32)
    return True


def log_out(session: MutableMapping[str, Any], store: DashboardStore) -> None:
    """End the session here and for every copy of its cookie."""
    session_id = session.get("sid")
    if isinstance(session_id, str):
        store.end_session(token_hash(session_id))
    session.clear()


def session_current(
    session: MutableMapping[str, Any], store: DashboardStore, now: datetime
) -> bool:
    """Whether the session's row exists, has not expired and is its user's.

    A cookie without a session id (from before the `sessions` table) is not.
    """
    user, session_id = session.get("user"), session.get("sid")
    if not isinstance(user, str) or not isinstance(session_id, str):
        return False
    return store.session_valid(user, token_hash(session_id), now)


class SessionCheck:
    """Empties a session that was ended on the server (see `session_current`).

    The signed cookie alone would stay valid until it expires; this is what
    makes logging out, `users remove` and `users add` with a new password end
    it everywhere. Runs inside SessionMiddleware, so every `session_user`
    afterwards sees the checked session.
    """

    def __init__(self, app: ASGIApp, store: DashboardStore, clock: Callable[[], datetime]) -> None:
        self.app = app
        self.store = store
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = scope.get("session") or {}
        if "user" in session and not await run_in_threadpool(
            session_current, session, self.store, self.clock()
        ):
            session.clear()
        await self.app(scope, receive, send)


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, created on first use (the login form needs one too)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(session: MutableMapping[str, Any], sent: str | None) -> bool:
    expected = session.get("csrf")
    return isinstance(expected, str) and sent is not None and hmac.compare_digest(expected, sent)


# Per user name, this many times the per-address limit: a name's count only slows
# guessing spread over many addresses, it must not let one address lock a user out.
NAME_FACTOR = 20
# Keys (addresses, names) the login table holds before it first forgets idle ones.
SWEEP_MIN = 1024


class LoginThrottle:
    """At most `attempts` logins per client address within `window` seconds.

    An attempt is counted before its password is checked, so concurrent
    requests cannot all pass the check; a successful one is taken back.
    """

    def __init__(
        self, attempts: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window
        self.clock = clock
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._sweep_at = SWEEP_MIN

    def _recent(self, key: str) -> deque[float]:
        attempts = self._attempts.setdefault(key, deque())
        cutoff = self.clock() - self.window
        while attempts and attempts[0] <= cutoff:
            attempts.popleft()
        return attempts

    def _keys(self, address: str, name: str) -> dict[str, int]:
        return {f"ip:{address}": self.attempts, f"user:{name}": self.attempts * NAME_FACTOR}

    def attempt(self, address: str, name: str) -> float | None:
        """Count a login attempt and return its moment; None (nothing counted) if over a limit."""
        with self._lock:
            keys = self._keys(address, name)
            if any(len(self._recent(key)) >= limit for key, limit in keys.items()):
                return None
            moment = self.clock()
            for key in keys:
                self._recent(key).append(moment)
            if len(self._attempts) >= self._sweep_at:
                self._sweep()
            return moment

    def _sweep(self) -> None:
        """Forget keys without an attempt in the window: a spray of names must not grow the table.

        Run when the table doubled since the last sweep, so its cost per attempt stays constant.
        """
        cutoff = self.clock() - self.window
        self._attempts = {key: a for key, a in self._attempts.items() if a and a[-1] > cutoff}
        self._sweep_at = max(SWEEP_MIN, 2 * len(self._attempts))

    def succeeded(self, address: str, name: str, moment: float) -> None:
        """Take back the attempt counted at `moment`: a right password is no failure."""
        with self._lock:
            for key in self._keys(address, name):
                attempts = self._attempts.get(key)
                if attempts is not None and moment in attempts:
                    attempts.remove(moment)


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds the CSP and friends to every response: nothing from a feed can run as script."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
