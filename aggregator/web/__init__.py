"""The project's HTTP endpoints: one Starlette app that later features extend.

`create_app` puts the settings and the store on `app.state` and mounts the
routes every deployment needs (unsubscribe links from mails). The editors'
dashboard adds its own routes through `routes=`, so one server (`web`,
`serve`) answers both.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from aggregator.config import Settings
from aggregator.store import Store
from aggregator.web import unsubscribe


def create_app(settings: Settings, store: Store, routes: Sequence[BaseRoute] = ()) -> Starlette:
    app = Starlette(routes=[*unsubscribe.routes(), *routes])
    app.state.settings = settings
    app.state.store = store
    return app
