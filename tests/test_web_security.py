"""Findings of the dashboard's security review, each kept fixed by a test over a real database.

Logins counted before the password is checked, one address cannot lock an
editor out, a password change, `users remove` and logging out end every copy
of a session (and expired or pre-upgrade sessions are refused), malformed input gets a 4xx
(never a 500, PostgreSQL included), feeds added in the browser name their
outlet as the CLI does, and the script's poll learns that the session ended.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from base64 import b64encode
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import click
import httpx
import pytest
from click.testing import CliRunner
from itsdangerous import TimestampSigner
from sqlalchemy import event, func, select, update
from starlette.applications import Starlette
from starlette.testclient import TestClient
from webapp import PASSWORD, app_for, csrf_of, log_in, settings
from webdata import NOW

from aggregator.cli import Context
from aggregator.mail import tokens
from aggregator.store import Store
from aggregator.store.dashboard import DashboardStore
from aggregator.store.mail import MailStore, Subscriber
from aggregator.store.schema import sessions
from aggregator.web import accounts, dashboard
from aggregator.web.auth import LoginThrottle


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> TestClient:
    app, _, _ = app_for(tmp_path, database_url)
    return TestClient(app, base_url="http://127.0.0.1")


def _login_form(client: TestClient, name: str, password: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    response: httpx.Response = client.post(
        "/login",
        data={"csrf_token": token, "name": name, "password": password, "next": "/"},
        follow_redirects=False,
    )
    return response


# -- logins -------------------------------------------------------------------


async def _concurrent_wrong_logins(app: Starlette, count: int) -> tuple[Counter[int], int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        token = csrf_of((await client.get("/login")).text)

        async def attempt(password: str) -> int:
            form = {"csrf_token": token, "name": "anna", "password": password, "next": "/"}
            return (await client.post("/login", data=form)).status_code

        statuses = await asyncio.gather(*(attempt(f"wrong {n}") for n in range(count)))
        return Counter(statuses), await attempt(PASSWORD)


def test_concurrent_logins_are_counted_before_the_password_is_checked(
    tmp_path: Path, database_url: str
) -> None:
    app, _, _ = app_for(tmp_path, database_url)
    statuses, then = asyncio.run(_concurrent_wrong_logins(app, 20))
    assert statuses == {401: 5, 429: 15}  # login_attempts is 5, however the requests overlap
    assert then == 429


def test_one_address_cannot_lock_an_editor_out(tmp_path: Path, database_url: str) -> None:
    app, _, _ = app_for(tmp_path, database_url)
    attacker = TestClient(app, base_url="http://127.0.0.1", client=("203.0.113.9", 4000))
    for _ in range(5):
        assert _login_form(attacker, "anna", "guess").status_code == 401
    assert _login_form(attacker, "anna", PASSWORD).status_code == 429
    anna = TestClient(app, base_url="http://127.0.0.1", client=("198.51.100.7", 4000))
    assert log_in(anna) == 303


def test_guessing_one_name_from_many_addresses_still_stops() -> None:
    moments = iter(range(10_000))
    throttle = LoginThrottle(5, 900, clock=lambda: float(next(moments)))
    allowed = [throttle.attempt(f"10.0.{n // 4}.{n % 4}", "anna") for n in range(200)]
    assert sum(moment is not None for moment in allowed) == 100  # 20 times the address limit
    assert throttle.attempt("192.0.2.1", "bob") is not None


def test_a_spray_of_names_does_not_grow_the_login_table_without_bound() -> None:
    now = [0.0]
    throttle = LoginThrottle(5, 900, clock=lambda: now[0])
    for minute in range(60):  # an hour of random names from random addresses
        now[0] = minute * 60.0
        for n in range(500):
            throttle.attempt(f"198.51.{minute}.{n % 250}", f"name-{minute}-{n}")
    # Only the last window's keys (15 minutes of 500 names and 250 addresses) are needed.
    assert len(throttle._attempts) <= 2 * (16 * 750)
    assert throttle.attempt("198.51.59.1", "someone") is not None  # limits still work
    for _ in range(5):
        throttle.attempt("192.0.2.9", f"guess-{_}")
    assert throttle.attempt("192.0.2.9", "anna") is None


def test_a_right_password_does_not_count() -> None:
    throttle = LoginThrottle(2, 900, clock=lambda: 1.0)
    for _ in range(3):
        moment = throttle.attempt("192.0.2.1", "anna")
        assert moment is not None
        throttle.succeeded("192.0.2.1", "anna", moment)
    assert throttle.attempt("192.0.2.1", "anna") is not None


def _session_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(sessions)).scalar_one())


def _logged_out(session: TestClient) -> bool:
    """The pages send the session to the login form, the API answers 401."""
    page = session.get("/", follow_redirects=False)
    location = str(page.headers.get("location", ""))
    api = session.get("/api/outlets")
    return page.status_code == 303 and location.startswith("/login") and api.status_code == 401


def _logged_in(app: Starlette) -> TestClient:
    """A browser logged in as the test editor."""
    browser = TestClient(app, base_url="http://127.0.0.1")
    assert log_in(browser) == 303
    return browser


def _browser_and_copy(app: Starlette) -> tuple[TestClient, TestClient]:
    """A logged-in browser, and a second client holding a copy of its session cookie."""
    browser = _logged_in(app)
    copied = TestClient(app, base_url="http://127.0.0.1", cookies=dict(browser.cookies))
    assert copied.get("/", follow_redirects=False).status_code == 200
    return browser, copied


def test_logging_out_ends_every_copy_of_the_session(tmp_path: Path, database_url: str) -> None:
    app, store, _ = app_for(tmp_path, database_url)
    browser, copied = _browser_and_copy(app)
    assert _session_rows(store) == 1
    other_device = _logged_in(app)
    token = csrf_of(browser.get("/").text)
    out = browser.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert _logged_out(browser) and _logged_out(copied)
    # Only that session ended: the editor's login on another device goes on.
    assert other_device.get("/", follow_redirects=False).status_code == 200
    assert _session_rows(store) == 1


def test_logging_in_again_ends_the_earlier_session_and_its_copies(
    tmp_path: Path, database_url: str
) -> None:
    app, store, _ = app_for(tmp_path, database_url)
    browser, copied = _browser_and_copy(app)
    assert log_in(browser) == 303  # the login page again, from a bookmark
    assert _session_rows(store) == 1
    assert _logged_out(copied)
    token = csrf_of(browser.get("/").text)
    browser.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert _logged_out(browser) and _session_rows(store) == 0


def test_a_form_whose_session_ended_while_it_was_sent_changes_nothing(
    tmp_path: Path, database_url: str
) -> None:
    """The session is checked again once the body is in (a slow body, a removed editor)."""
    app, store, _ = app_for(tmp_path, database_url)
    browser = _logged_in(app)
    token = csrf_of(browser.get("/feeds").text)
    sent = {"csrf_token": token, "url": "http://127.0.0.1:9/late.xml", "outlet": "late"}

    def body_after_removal() -> Iterator[bytes]:
        assert DashboardStore(store).remove_user("anna")  # the request has passed SessionCheck
        yield urlencode(sent).encode()

    headers = {"content-type": "application/x-www-form-urlencoded"}
    late = browser.post("/feeds/add", content=body_after_removal(), headers=headers)
    assert late.status_code == 403
    assert not any("late.xml" in status.feed.url for status in store.feed_status())


def test_an_expired_session_is_refused_and_deleted_at_the_next_login(
    tmp_path: Path, database_url: str
) -> None:
    app, store, _ = app_for(tmp_path, database_url)
    browser = _logged_in(app)
    with store.engine.begin() as conn:  # the row's lifetime ends at the app's clock
        assert conn.execute(select(sessions.c.expires_at)).scalar_one() == NOW + timedelta(
            hours=settings(tmp_path, database_url).dashboard.session_hours
        )
        conn.execute(update(sessions).values(expires_at=NOW))
    assert _logged_out(browser)
    _logged_in(app)
    assert _session_rows(store) == 1  # the expired row went with the new login


def test_a_cookie_from_before_the_sessions_table_is_logged_out(
    tmp_path: Path, database_url: str
) -> None:
    """Such cookies carry no session id: their holders log in once more."""
    app, store, _ = app_for(tmp_path, database_url)
    config = settings(tmp_path, database_url)
    password_hash = DashboardStore(store).password_hash("anna") or ""
    old = {
        "user": "anna",
        "fingerprint": hashlib.sha256(password_hash.encode()).hexdigest()[:16],
        "csrf": "t" * 43,
    }
    signer = TimestampSigner(dashboard.session_secret(config, store))
    cookie = signer.sign(b64encode(json.dumps(old).encode())).decode()
    browser = TestClient(
        app, base_url="http://127.0.0.1", cookies={dashboard.SESSION_COOKIE: cookie}
    )
    assert _logged_out(browser)
    assert log_in(browser) == 303
    assert browser.get("/", follow_redirects=False).status_code == 200


def test_checking_a_session_is_one_query(tmp_path: Path, database_url: str) -> None:
    app, store, _ = app_for(tmp_path, database_url)
    browser = _logged_in(app)
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        assert browser.get("/api/outlets").status_code == 200
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    checks = [s for s in statements if "sessions" in s or "users" in s]
    assert len(checks) == 1 and "sessions.id_hash" in checks[0], checks


def test_changing_the_password_ends_every_session(tmp_path: Path, database_url: str) -> None:
    app, store, _ = app_for(tmp_path, database_url)
    browser, copied = _browser_and_copy(app)
    assert _session_rows(store) == 1
    cli = click.Group()
    accounts.register(cli)
    context = Context(settings(tmp_path, database_url))
    changed = CliRunner().invoke(
        cli, ["users", "add", "anna"], input="a new password\n", obj=context
    )
    context.close()
    assert changed.output == "changed the password of anna\n"
    assert _session_rows(store) == 0
    assert _logged_out(browser) and _logged_out(copied)
    assert log_in(browser, "a new password") == 303
    assert browser.get("/", follow_redirects=False).status_code == 200


def _users(tmp_path: Path, database_url: str, *args: str) -> str:
    cli = click.Group()
    accounts.register(cli)
    context = Context(settings(tmp_path, database_url))
    try:
        return CliRunner().invoke(cli, ["users", *args], obj=context).output
    finally:
        context.close()


def test_revoking_tokens_and_removing_an_editor_take_effect_at_once(
    tmp_path: Path, database_url: str
) -> None:
    app, store, _ = app_for(tmp_path, database_url)
    browser, copied = _browser_and_copy(app)
    assert _session_rows(store) == 1
    tokens_given = [_users(tmp_path, database_url, "token", "anna").strip() for _ in range(2)]
    script = TestClient(app, base_url="http://127.0.0.1")
    bearer = {"Authorization": f"Bearer {tokens_given[0]}"}
    assert script.get("/api/outlets", headers=bearer).status_code == 200
    assert _users(tmp_path, database_url, "revoke", "anna") == "revoked 2 tokens of anna\n"
    assert script.get("/api/outlets", headers=bearer).status_code == 401
    assert browser.get("/", follow_redirects=False).status_code == 200  # logins stay
    assert _users(tmp_path, database_url, "remove", "anna") == "removed anna\n"
    assert _session_rows(store) == 0
    assert _logged_out(browser) and _logged_out(copied)
    assert log_in(browser) != 303
    assert "no user 'anna'" in _users(tmp_path, database_url, "remove", "anna")


# -- malformed input ----------------------------------------------------------


MALFORMED_TOKENS = [
    "\u00b2.abc",  # "²".isdigit() is True, int() refuses it
    "\u0661.abc",  # an Arabic-Indic one
    "999999999999999999.abc",  # beyond PostgreSQL's integer
    "9" * 5000 + ".abc",  # beyond int()'s 4300 digits
    "1.\u00e9",  # compare_digest refuses non-ASCII text
    "1.abc%00",
    ".abc",
    "1.",
]


@pytest.mark.parametrize("token", MALFORMED_TOKENS)
def test_malformed_token_is_a_bad_token(token: str) -> None:
    with pytest.raises(tokens.BadToken):
        tokens.verify(b"secret", token, Subscriber("a@example.org", "daily", id=1))


def test_malformed_unsubscribe_links_are_invalid_not_errors(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    MailStore(store).add_subscriber(Subscriber(email="a@example.org", digest="daily"), NOW)
    for token in MALFORMED_TOKENS:
        for method in ("GET", "POST"):
            response = client.request(method, f"/unsubscribe/{token}")
            assert response.status_code == 400, (method, token[:20])
            assert "not valid" in response.text


def test_nul_and_over_long_form_fields_get_a_4xx(client: TestClient) -> None:
    assert _login_form(client, "an\x00na", "wrong").status_code == 401
    too_long = _login_form(client, "a" * 101, "wrong")
    assert too_long.status_code == 400 and "at most 100 characters" in too_long.text
    assert log_in(client) == 303
    token = csrf_of(client.get("/feeds").text)
    toggled = client.post(
        "/feeds/toggle", data={"csrf_token": token, "url": "https://x/\x00", "action": "disable"}
    )
    assert toggled.status_code == 404
    long_outlet = client.post(
        "/feeds/add", data={"csrf_token": token, "url": "http://127.0.0.1/f", "outlet": "o" * 201}
    )
    assert long_outlet.status_code == 400
    assert "an outlet name has at most 200 characters" in long_outlet.text
    huge = "9" * 5000
    assert client.get(f"/story/{huge}").status_code == 404
    merged = client.post("/story/1/merge", data={"csrf_token": token, "other_story": huge})
    assert merged.status_code == 400


def test_nul_in_an_outlet_name_is_dropped(tmp_path: Path, database_url: str) -> None:
    app, store, _ = app_for(tmp_path, database_url, allow_private=True)
    client = _logged_in(app)
    token = csrf_of(client.get("/feeds").text)
    form = {"csrf_token": token, "url": "http://127.0.0.1/feed\x00", "outlet": "Lo\x00cal"}
    assert client.post("/feeds/add", data=form, follow_redirects=False).status_code == 303
    assert "Local" in [row.name for row in DashboardStore(store).outlets()]


# -- feeds, fragments, exports --------------------------------------------------


def test_dashboard_names_outlets_as_the_cli_does(tmp_path: Path, database_url: str) -> None:
    app, store, _ = app_for(tmp_path, database_url, allow_private=True)
    client = _logged_in(app)
    token = csrf_of(client.get("/feeds").text)
    urls = ["http://www.spiegel.de/politik.xml", "file:///srv/feeds/local.xml"]
    for url in urls:
        form = {"csrf_token": token, "url": url, "outlet": ""}
        assert client.post("/feeds/add", data=form, follow_redirects=False).status_code == 303
    names = {row.name for row in DashboardStore(store).outlets()}
    assert "spiegel.de" in names and "file:///srv/feeds/local.xml" in names
    assert "www.spiegel.de" not in names and "" not in names


def test_fragment_without_a_session_is_401_not_the_login_page(client: TestClient) -> None:
    response = client.get("/fragments/now", follow_redirects=False)
    assert response.status_code == 401
    assert 'action="/login"' not in response.text
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303  # whole pages still go to the login form


# -- corrections and clustering -----------------------------------------------------


def test_a_correction_waits_for_the_clustering_pass_and_asks_to_retry(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A split landing between two batches of a clustering pass could tear a story apart."""
    monkeypatch.setattr(dashboard, "CORRECTION_WAIT", 0.2)
    app, store, ids = app_for(tmp_path, database_url)
    client = _logged_in(app)
    story = DashboardStore(store).entries_by_id([ids["election"][0]])[ids["election"][0]]
    page = client.get(f"/story/{story.cluster_id}").text
    form = {"csrf_token": csrf_of(page), "entry_id": str(ids["election"][-1])}
    with store.exclusive("run"):  # a clustering pass holds the run lock
        busy = client.post(f"/story/{story.cluster_id}/split", data=form, follow_redirects=False)
        assert busy.status_code == 503
        assert "try again" in busy.text
        assert DashboardStore(store).corrections() == []
    done = client.post(f"/story/{story.cluster_id}/split", data=form, follow_redirects=False)
    assert done.status_code == 303
    assert [c.kind for c in DashboardStore(store).corrections()] == ["split"]
