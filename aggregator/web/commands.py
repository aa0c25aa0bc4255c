"""The `web` command: serve the project's HTTP endpoints with uvicorn."""

from __future__ import annotations

from typing import Protocol

import click
import uvicorn
from starlette.applications import Starlette

from aggregator.config import Settings
from aggregator.store import Store
from aggregator.web import create_app, dashboard


class Runtime(Protocol):
    """What a command needs from the CLI's context object (`aggregator.cli.Context`)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...


def application(settings: Settings, store: Store) -> Starlette:
    """Everything the project serves over HTTP: dashboard, API, unsubscribe links."""
    return create_app(settings, store, routes=dashboard.routes(settings, store))


@click.command("web")
@click.option("--host", help="Address to bind (default: web.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: web.port, 8080).")
@click.pass_obj
def web(obj: Runtime, host: str | None, port: int | None) -> None:
    """Serve the editors' dashboard, its JSON API and unsubscribe links until interrupted."""
    settings = obj.settings
    app = application(settings, obj.store)
    uvicorn.run(app, host=host or settings.web.host, port=port or settings.web.port)


def register(main: click.Group) -> None:
    main.add_command(web)
