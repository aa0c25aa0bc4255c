"""Per-request access to the dashboard's shared objects, and query parameters checked once.

Both the pages and the JSON API read parameters the same way, so a bad
``hours`` gets the same one-line 400 from either.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from starlette.exceptions import HTTPException
from starlette.requests import Request

from aggregator.config import Settings
from aggregator.durations import parse_when
from aggregator.store import Store
from aggregator.store.dashboard import DashboardStore
from aggregator.store.schema import row_id
from aggregator.web.auth import LoginThrottle

# How long a computed view is shared between pollers.
VIEW_SECONDS = 5.0
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Dashboard:
    """What every request needs: settings, the database and the login throttle."""

    settings: Settings
    store: Store
    data: DashboardStore
    throttle: LoginThrottle
    zone: ZoneInfo
    clock: Callable[[], datetime] = field(default=utcnow)
    views: ViewCache = field(default_factory=lambda: ViewCache(VIEW_SECONDS))


class ViewCache:
    """Answers of the heavy views, kept for a few seconds.

    Every open dashboard polls the same Now list, and scripts poll the API;
    within `seconds` they share one computation. Cleared when an editor
    corrects a story, so their own change shows at once.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The kept answer for `key`, or `compute()`'s; concurrent misses compute once."""
        hit = self._values.get(key)
        if hit is not None and hit[0] > self.clock():
            return cast(T, hit[1])
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > self.clock():
                return cast(T, hit[1])
            value = compute()
            now = self.clock()
            with self._guard:
                if len(self._values) > 256:
                    self._values = {k: v for k, v in self._values.items() if v[0] > now}
                    self._locks = {k: self._locks[k] for k in self._values if k in self._locks}
                self._values[key] = (now + self.seconds, value)
            return value

    def clear(self) -> None:
        self._values.clear()


def state(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; 400 naming it otherwise."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name}: {raw[:40]!r} is not a whole number") from None
    if not low <= value <= high:
        raise HTTPException(400, f"{name}: {value} is not between {low} and {high}")
    return value


def text_param(request: Request, name: str, limit: int = 200) -> str:
    """A text query parameter, trimmed, without control characters, at most `limit` long.

    PostgreSQL refuses NUL in text, and no outlet name or search word holds a
    control character, so they are dropped here rather than failing a query.
    """
    return clean_text(request.query_params.get(name, ""))[:limit]


def clean_text(raw: str) -> str:
    """`raw` trimmed and without control characters, for query parameters and form fields."""
    return _CONTROLS.sub("", raw).strip()


_CONTROLS = re.compile("[\x00-\x1f\x7f]")


def hours_param(request: Request) -> int:
    return int_param(request, "hours", state(request).settings.dashboard.now_hours, 1, 24 * 31)


def when_param(request: Request, name: str, now: datetime) -> datetime | None:
    """A time as `--since` takes it (ISO, or relative like 24h); 400 naming it otherwise."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_when(raw, now)
    except (ValueError, OverflowError) as exc:
        raise HTTPException(400, f"{name}: {exc}") from None


def story_id(request: Request) -> int:
    """The story number in the path; 404 for anything that cannot be one."""
    raw = str(request.path_params["story_id"])
    number = row_id(raw)
    if number is None:
        raise HTTPException(404, f"no story {raw[:40]!r}")
    return number
