"""`users add` and `users token`: passwords from a pipe, tokens that open the API."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner
from starlette.testclient import TestClient
from webapp import settings

from aggregator.cli import Context
from aggregator.store.dashboard import DashboardStore
from aggregator.web import accounts, auth, create_app
from aggregator.web.dashboard import routes


def _cli() -> click.Group:
    group = click.Group()
    accounts.register(group)
    return group


def test_users_add_reads_a_piped_password_and_token_opens_the_api(tmp_path: Path) -> None:
    config = settings(tmp_path, f"sqlite:///{tmp_path / 'cli.db'}")
    context = Context(config)
    runner = CliRunner()
    added = runner.invoke(_cli(), ["users", "add", "anna"], input="s3cret-enough\n", obj=context)
    assert added.exit_code == 0 and added.output == "added anna\n"
    stored = DashboardStore(context.store).password_hash("anna")
    assert auth.verify_password(stored, "s3cret-enough")
    short = runner.invoke(_cli(), ["users", "add", "bob"], input="short\n", obj=context)
    assert short.exit_code == 2 and "at least 8" in short.output
    unknown = runner.invoke(_cli(), ["users", "token", "bob"], obj=context)
    assert unknown.exit_code == 2 and "no user 'bob'" in unknown.output
    issued = runner.invoke(_cli(), ["users", "token", "anna"], obj=context)
    token = issued.output.strip()
    app = create_app(config, context.store, routes=routes(config, context.store))
    client = TestClient(app)
    response = client.get("/api/stories?hours=24", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json()["stories"] == []
    context.close()
