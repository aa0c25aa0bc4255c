"""The dashboard's HTTP surface with Starlette's test client over a real database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient
from webapp import PASSWORD, app_for, csrf_of, log_in
from webdata import NOW, clustered

from aggregator.store.dashboard import DashboardStore
from aggregator.web import auth

# Bad input must get a documented 4xx, never a 5xx, and answers must match the schema.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> TestClient:
    app, _, _ = app_for(tmp_path, database_url)
    return TestClient(app, base_url="http://127.0.0.1")


def _token(client: TestClient) -> str:
    store = client.app.state.store  # type: ignore[attr-defined]
    token = auth.new_token()
    assert DashboardStore(store).add_token("anna", auth.token_hash(token), NOW)
    return token


def test_api_needs_a_login_or_a_token(client: TestClient) -> None:
    response = client.get("/api/stories?hours=24")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/stories", headers={"Authorization": "Bearer nope"}).status_code == 401
    token = _token(client)
    body = client.get(
        "/api/stories?hours=10000", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert "hours" in body["error"]
    body = client.get("/api/stories?hours=24", headers={"Authorization": f"Bearer {token}"}).json()
    first = body["stories"][0]
    assert first["title"] == "Landtagswahl in Sachsen: CDU knapp vor AfD"
    assert first["outlets"] == ["tagesschau.de", "spiegel.de", "zeit.de", "news.de"]
    assert {"url", "title", "outlet", "published"} <= set(first["entries"][0])
    assert first["entries"][0]["url"].startswith("https://tagesschau.de/")


def test_api_story_gaps_search_feeds(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {_token(client)}"}
    stories = client.get("/api/stories", headers=headers).json()["stories"]
    story = client.get(f"/api/stories/{stories[0]['id']}", headers=headers).json()
    assert story["entries"][1]["matched"]["score"] > 0
    assert client.get("/api/stories/999999", headers=headers).status_code == 404
    assert client.get("/api/stories/99999999999999999999999", headers=headers).status_code == 404
    gaps = client.get("/api/gaps", headers=headers).json()
    assert gaps["outlets"] == ["tagesschau.de"]
    assert [g["title"] for g in gaps["gaps"]] == [
        "Sturmtief Zoltan legt Bahnverkehr in Norddeutschland lahm"
    ]
    assert gaps["gaps"][0]["gap_open_since"] == "2026-03-02T04:10:00Z"
    assert len(gaps["scoops"]) == 2
    found = client.get("/api/search?q=Sturmtief&outlet=zeit.de", headers=headers).json()
    assert [e["outlet"] for e in found["entries"]] == ["zeit.de"]
    assert len(client.get("/api/feeds", headers=headers).json()["feeds"]) == 4
    assert client.get("/api/nothing", headers=headers).status_code == 404


def test_control_characters_in_text_parameters_are_dropped(client: TestClient) -> None:
    # PostgreSQL refuses NUL in text; found by the schema fuzzer with some seeds.
    headers = {"Authorization": f"Bearer {_token(client)}"}
    gaps = client.get("/api/gaps?outlet=%00zeit.de%0A", headers=headers)
    assert gaps.status_code == 200
    assert gaps.json()["outlets"] == ["zeit.de"]
    found = client.get("/api/search?q=Sturm%00tief&outlet=%00&language=d%00e", headers=headers)
    assert found.status_code == 200
    assert found.json()["entries"]


def test_token_is_read_only_and_session_opens_api(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {_token(client)}"}
    # A token is not a login: pages and POSTs stay closed.
    page = client.get("/", headers=headers, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.post("/feeds/toggle", headers=headers, data={"url": "x"}).status_code == 403
    assert log_in(client) == 303
    assert client.get("/api/outlets").status_code == 200


def test_login_is_rate_limited(client: TestClient) -> None:
    for _ in range(5):
        assert log_in(client, "wrong password") == 401
    assert log_in(client) == 429  # even the right password waits now


def test_post_without_csrf_is_refused(client: TestClient) -> None:
    assert log_in(client) == 303
    page = client.get("/feeds")
    assert page.status_code == 200
    url = "https://tagesschau.de/feed.xml"
    refused = client.post("/feeds/toggle", data={"url": url, "action": "disable"})
    assert refused.status_code == 403
    forged = client.post(
        "/feeds/toggle", data={"url": url, "action": "disable", "csrf_token": "forged"}
    )
    assert forged.status_code == 403
    done = client.post(
        "/feeds/toggle", data={"url": url, "action": "disable", "csrf_token": csrf_of(page.text)}
    )
    assert done.status_code == 200 and "Disabled" in done.text


def test_pages_escape_feed_text_and_send_csp(client: TestClient) -> None:
    assert log_in(client) == 303
    for path in ("/", "/gaps", "/matrix", "/search?q=Maut", "/feeds", "/chart", "/fragments/now"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "<script>alert" not in response.text, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "&lt;script&gt;alert" in client.get("/").text
    cookie = client.cookies.jar
    assert any(c.name == "aggregator_session" for c in cookie)


def test_wide_story_shows_first_and_latest_outlets(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    wide = [(f"outlet-{n:02d}.de", 600 - n * 10) for n in range(20)]  # in order of reporting
    [ids] = clustered(store, [wide])
    assert log_in(client) == 303
    page = client.get("/fragments/now").text
    story = page[page.index(f'data-story="{ids[0]}"') :].split('<li class="story"', 1)[0]
    chips = re.findall(r'data-outlet="([^"]+)"', story)
    names = [name for name, _ in wide]
    assert chips == names[:6] + names[-9:]  # who was first, and who joined lately
    assert "+5 more" in story
    assert f'data-outlets="{"|".join(names)}"' in story  # all of them, for the live highlight
    assert story.count("<time") == 20  # every entry in the list


def test_session_cookie_flags(tmp_path: Path, database_url: str) -> None:
    app, _, _ = app_for(tmp_path, database_url)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token = csrf_of(client.get("/login").text)
        response = client.post(
            "/login",
            data={"csrf_token": token, "name": "anna", "password": PASSWORD},
            follow_redirects=False,
        )
        header = response.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=lax" in header


def test_matrix_csv_and_feed_add_ssrf_guard(client: TestClient) -> None:
    assert log_in(client) == 303
    csv_text = client.get("/matrix.csv?hours=24").text
    header, first = csv_text.splitlines()[:2]
    assert header == "story_id,title,first_seen,news.de,spiegel.de,tagesschau.de,zeit.de"
    assert ",0," in first
    page = client.get("/feeds")
    refused = client.post(
        "/feeds/add",
        data={"url": "http://127.0.0.1:22/feed", "outlet": "x", "csrf_token": csrf_of(page.text)},
    )
    assert refused.status_code == 400 and "Not added" in refused.text


def test_openapi_schema_fuzzed_without_server_errors(tmp_path: Path, database_url: str) -> None:
    app, store, _ = app_for(tmp_path, database_url)
    token = auth.new_token()
    DashboardStore(store).add_token("anna", auth.token_hash(token), NOW)
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        assert response.status_code < 500, (case.path, case.query, response.text)
        case.validate_response(response, checks=CHECKS)

    for operation in schema.get_all_operations():
        given(operation.ok().as_strategy())(check)()
