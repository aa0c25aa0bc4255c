"""A dashboard app over a seeded database, and logging in to it, for the web tests."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.applications import Starlette
from starlette.testclient import TestClient
from webdata import NOW, seeded

from aggregator.config import Settings
from aggregator.store import Store
from aggregator.store.dashboard import DashboardStore
from aggregator.web import auth, create_app
from aggregator.web.dashboard import routes

PASSWORD = "correct horse battery"


def settings(tmp_path: Path, url: str, *, allow_private: bool = False) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "fetch": {"allow_private_addresses": allow_private},
            "dashboard": {"home_outlets": ["tagesschau.de"], "timezone": "Europe/Berlin"},
            "base_dir": tmp_path,
        }
    )


def app_for(
    tmp_path: Path, url: str, *, allow_private: bool = False
) -> tuple[Starlette, Store, dict[str, list[int]]]:
    """The app over the seeded stories; `allow_private` lets feeds be added without DNS."""
    store, ids = seeded(url)
    DashboardStore(store).set_password("anna", auth.hash_password(PASSWORD), NOW)
    config = settings(tmp_path, url, allow_private=allow_private)
    app = create_app(config, store, routes=routes(config, store, clock=lambda: NOW))
    return app, store, ids


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def log_in(client: TestClient, password: str = PASSWORD) -> int:
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"csrf_token": token, "name": "anna", "password": password, "next": "/"},
        follow_redirects=False,
    )
    return response.status_code
