"""The JSON API under /api/: the dashboard's data for a newsroom's own scripts.

Read-only, answered for a logged-in editor (session cookie) or a bearer
token from `users token NAME`. Keys are only ever added, never renamed; the
OpenAPI document at /api/openapi.json describes every endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from aggregator.digest.records import isoformat
from aggregator.store.dashboard import DashboardStore, Hit
from aggregator.web import auth, present
from aggregator.web.state import (
    Dashboard,
    hours_param,
    int_param,
    state,
    story_id,
    text_param,
    when_param,
)

GROWTH_WINDOW = timedelta(hours=2)


def error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


def authenticated(handler: Handler) -> Handler:
    """Answer only with a valid session or bearer token; 401 otherwise."""

    async def guarded(request: Request) -> Response:
        data = state(request).data
        if await run_in_threadpool(auth.api_user, request, data) is None:
            return error(401, "log in or send Authorization: Bearer TOKEN (see `users token`)")
        return await handler(request)

    return guarded


def _json(payload: dict[str, Any]) -> JSONResponse:
    return JSONResponse(payload, headers={"Cache-Control": "no-store"})


@authenticated
async def stories(request: Request) -> Response:
    dashboard = state(request)
    hours = hours_param(request)
    limit = int_param(request, "limit", dashboard.settings.dashboard.max_stories, 1, 500)
    now = dashboard.clock()

    def compute() -> bytes:
        found = dashboard.data.now(now - timedelta(hours=hours), now - GROWTH_WINDOW, limit)
        stories = [present.story_record(s.cluster, growth=s.growth) for s in found]
        payload = {"hours": hours, "generated_at": isoformat(now), "stories": stories}
        return bytes(JSONResponse(payload).body)

    # Pollers share the serialized answer: a day's stories are several hundred kB of JSON.
    key = ("api-stories", hours, limit, now.replace(second=0, microsecond=0))
    body = await run_in_threadpool(dashboard.views.get, key, compute)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@authenticated
async def story(request: Request) -> Response:
    dashboard = state(request)
    wanted = story_id(request)
    found = await run_in_threadpool(dashboard.data.clusters, [wanted])
    if wanted not in found:
        return error(404, f"no story {wanted}")
    record = present.story_record(found[wanted])
    ids = [item["entry_id"] for item in record["entries"]]
    history = await run_in_threadpool(dashboard.data.title_history, ids)
    for item in record["entries"]:
        item["earlier_titles"] = [
            {"title": title, "replaced_at": isoformat(at)}
            for title, at in history.get(item["entry_id"], [])
        ]
    return _json(record)


@authenticated
async def gaps(request: Request) -> Response:
    dashboard = state(request)
    options = dashboard.settings.dashboard
    hours = hours_param(request)
    k = int_param(request, "min_outlets", options.gap_min_outlets, 1, 1000)
    chosen = text_param(request, "outlet")
    home = [chosen] if chosen else list(options.home_outlets)
    now = dashboard.clock()
    since = now - timedelta(hours=hours)
    open_gaps = await run_in_threadpool(dashboard.data.gaps, home, since, k, 100)
    scoops = await run_in_threadpool(dashboard.data.scoops, home, since, 50)
    return _json(
        {
            "outlets": home,
            "hours": hours,
            "min_outlets": k,
            "gaps": [present.gap_record(gap, now) for gap in open_gaps],
            "scoops": [present.story_record(cluster) for cluster in scoops],
        }
    )


@authenticated
async def outlets(request: Request) -> Response:
    rows = await run_in_threadpool(state(request).data.outlets)
    return _json(
        {"outlets": [{"name": r.name, "language": r.language, "feeds": r.feeds} for r in rows]}
    )


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else isoformat(moment)


@authenticated
async def feeds(request: Request) -> Response:
    rows = await run_in_threadpool(state(request).store.feed_status)
    return _json(
        {
            "feeds": [
                {
                    "url": row.feed.url,
                    "outlet": row.feed.outlet,
                    "title": row.feed.title,
                    "status": row.feed.last_status,
                    "error": row.feed.last_error,
                    "consecutive_errors": row.feed.consecutive_errors,
                    "failing_since": _time(row.feed.failing_since),
                    "last_fetched_at": _time(row.feed.last_fetched_at),
                    "next_fetch_at": _time(row.feed.next_fetch_at),
                    "disabled": row.feed.disabled,
                    "disabled_reason": row.feed.disabled_reason,
                    "entries": row.entries,
                }
                for row in rows
            ]
        }
    )


@dataclass(frozen=True)
class SearchParams:
    q: str
    since: datetime | None
    until: datetime | None
    outlet: str | None
    language: str | None
    min_outlets: int
    limit: int


def search_params(request: Request, dashboard: Dashboard) -> SearchParams:
    now = dashboard.clock()
    return SearchParams(
        q=text_param(request, "q"),
        since=when_param(request, "since", now),
        until=when_param(request, "until", now),
        outlet=text_param(request, "outlet") or None,
        language=text_param(request, "language") or None,
        min_outlets=int_param(request, "min_outlets", 1, 1, 1000),
        limit=int_param(request, "limit", 100, 1, 500),
    )


def run_search(data: DashboardStore, params: SearchParams) -> list[Hit]:
    return data.search(
        params.q,
        since=params.since,
        until=params.until,
        outlet=params.outlet,
        language=params.language,
        min_outlets=params.min_outlets,
        limit=params.limit,
    )


@authenticated
async def search(request: Request) -> Response:
    dashboard = state(request)
    params = search_params(request, dashboard)
    hits = await run_in_threadpool(run_search, dashboard.data, params)
    entries = []
    for hit in hits:
        record = present.entry_record(hit.entry)
        record["story_outlets"] = hit.outlet_count
        entries.append(record)
    return _json({"q": params.q, "entries": entries})


@authenticated
async def corrections(request: Request) -> Response:
    rows = await run_in_threadpool(state(request).data.corrections)
    return _json(
        {
            "corrections": [
                {
                    "id": row.id,
                    "kind": row.kind,
                    "entry_id": row.entry_id,
                    "other_id": row.other_id,
                    "created_by": row.created_by,
                    "created_at": isoformat(row.created_at),
                }
                for row in rows
            ]
        }
    )


@authenticated
async def examples(request: Request) -> Response:
    """Corrected stories as JSONL rows with a `story` label: input for `dedupe --gold`."""
    rows = await run_in_threadpool(lambda: list(state(request).data.labelled_examples()))
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return Response(body, media_type="application/x-ndjson; charset=utf-8")


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


async def not_found(request: Request) -> Response:
    raise HTTPException(404, f"no API endpoint {request.url.path}")


def routes() -> list[BaseRoute]:
    return [
        Route("/api/openapi.json", openapi),
        Route("/api/stories", stories),
        Route("/api/stories/{story_id}", story),
        Route("/api/gaps", gaps),
        Route("/api/outlets", outlets),
        Route("/api/feeds", feeds),
        Route("/api/search", search),
        Route("/api/corrections", corrections),
        Route("/api/corrections/examples.jsonl", examples),
        Route("/api/{rest:path}", not_found),
    ]


# -- the OpenAPI document -----------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_HOURS = _query(
    "hours",
    "Look back this many hours (default: dashboard.now_hours).",
    {"type": "integer", "minimum": 1, "maximum": 744},
)
_MIN_OUTLETS = _query(
    "min_outlets",
    "Only stories with at least this many outlets.",
    {"type": "integer", "minimum": 1, "maximum": 1000},
)
_LIMIT = _query(
    "limit", "At most this many results.", {"type": "integer", "minimum": 1, "maximum": 500}
)
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_STRING = {"type": ["string", "null"]}


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}},
        "400": {"description": "A parameter is out of range", "content": _ERROR},
        "401": {"description": "No valid session or bearer token", "content": _ERROR},
    }


_ERROR = {"application/json": {"schema": _ref("Error")}}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": {"type": "string"}}, ["error"]),
    "Entry": _object(
        {
            "id": {"type": "string", "description": "The feed's guid"},
            "entry_id": {"type": "integer"},
            "url": {**_NULLABLE_STRING, "description": "http(s) only; null otherwise"},
            "title": {"type": "string"},
            "outlet": {"type": "string"},
            "published": _TIME,
            "matched": {
                "type": "object",
                "description": "The member this entry matched and why",
                "properties": {
                    "id": _NULLABLE_STRING,
                    "score": {"type": "number"},
                    "reason": {"type": "string"},
                },
            },
            "earlier_titles": {
                "type": "array",
                "items": _object(
                    {"title": {"type": "string"}, "replaced_at": _TIME}, ["title", "replaced_at"]
                ),
            },
        },
        ["id", "entry_id", "url", "title", "outlet", "published"],
    ),
    "Story": _object(
        {
            "id": {"type": "integer"},
            "title": {"type": "string"},
            "outlets": {"type": "array", "items": {"type": "string"}},
            "outlet_count": {"type": "integer"},
            "first_seen": _TIME,
            "first_outlet": {"type": "string"},
            "last_seen": _TIME,
            "size": {"type": "integer"},
            "growth": {"type": "integer", "description": "Outlets active in the last 2 hours"},
            "gap_open_since": _TIME,
            "gap_open_minutes": {"type": "integer"},
            "entries": {"type": "array", "items": _ref("Entry")},
        },
        ["id", "title", "outlets", "outlet_count", "first_seen", "entries"],
    ),
    "SearchHit": _object(
        {
            "entry_id": {"type": "integer"},
            "story_id": {"type": ["integer", "null"]},
            "title": {"type": "string"},
            "summary": {"type": "string"},
            "url": _NULLABLE_STRING,
            "outlet": {"type": "string"},
            "language": _NULLABLE_STRING,
            "published": _TIME,
            "story_outlets": {"type": "integer"},
        },
        ["entry_id", "title", "outlet", "published"],
    ),
}

_STORY_ID = {
    "name": "story_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "aggregator dashboard API",
        "version": "1",
        "description": "Read-only access to stories, coverage gaps, outlets and feeds. "
        "Authenticate with `Authorization: Bearer TOKEN` (`users token NAME`).",
    },
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/stories": {
            "get": {
                "summary": "Stories of the last hours, most outlets and fastest growth first",
                "parameters": [_HOURS, _LIMIT],
                "responses": _ok(
                    _object(
                        {
                            "hours": {"type": "integer"},
                            "generated_at": _TIME,
                            "stories": {"type": "array", "items": _ref("Story")},
                        },
                        ["stories"],
                    ),
                    "Ranked stories",
                ),
            }
        },
        "/api/stories/{story_id}": {
            "get": {
                "summary": "One story with every entry, why it matched, and earlier headlines",
                "parameters": [_STORY_ID],
                "responses": {
                    **_ok(_ref("Story"), "The story"),
                    "404": {"description": "No such story", "content": _ERROR},
                },
            }
        },
        "/api/gaps": {
            "get": {
                "summary": "Stories other outlets carry that ours has not; and our scoops",
                "parameters": [
                    _query(
                        "outlet", "Whose gaps (default: dashboard.home_outlets)", {"type": "string"}
                    ),
                    _HOURS,
                    _MIN_OUTLETS,
                ],
                "responses": _ok(
                    _object(
                        {
                            "outlets": {"type": "array", "items": {"type": "string"}},
                            "gaps": {"type": "array", "items": _ref("Story")},
                            "scoops": {"type": "array", "items": _ref("Story")},
                        },
                        ["gaps", "scoops"],
                    ),
                    "Gaps, oldest first, and scoops",
                ),
            }
        },
        "/api/outlets": {
            "get": {
                "summary": "Every outlet",
                "responses": _ok(
                    _object(
                        {"outlets": {"type": "array", "items": {"type": "object"}}}, ["outlets"]
                    ),
                    "Outlets by name",
                ),
            }
        },
        "/api/feeds": {
            "get": {
                "summary": "Every feed with its health",
                "responses": _ok(
                    _object({"feeds": {"type": "array", "items": {"type": "object"}}}, ["feeds"]),
                    "Feeds by outlet",
                ),
            }
        },
        "/api/search": {
            "get": {
                "summary": "Full-text search over headlines and leads",
                "parameters": [
                    _query(
                        "q", "Words, all of which must occur (prefixes match)", {"type": "string"}
                    ),
                    _query("since", "ISO time or relative (24h)", {"type": "string"}),
                    _query("until", "ISO time or relative", {"type": "string"}),
                    _query("outlet", "Only this outlet", {"type": "string"}),
                    _query("language", "Only this language", {"type": "string"}),
                    _MIN_OUTLETS,
                    _LIMIT,
                ],
                "responses": _ok(
                    _object(
                        {
                            "q": {"type": "string"},
                            "entries": {"type": "array", "items": _ref("SearchHit")},
                        },
                        ["entries"],
                    ),
                    "Matching entries, newest first",
                ),
            }
        },
        "/api/corrections": {
            "get": {
                "summary": "Editors' splits and merges, oldest first",
                "responses": _ok(
                    _object(
                        {"corrections": {"type": "array", "items": {"type": "object"}}},
                        ["corrections"],
                    ),
                    "Corrections",
                ),
            }
        },
        "/api/corrections/examples.jsonl": {
            "get": {
                "summary": "Corrected stories as labelled JSONL for `dedupe FILE --gold`",
                "responses": {
                    "200": {
                        "description": "One entry per line with a `story` label",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    "401": {"description": "No valid session or bearer token", "content": _ERROR},
                },
            }
        },
    },
}
