"""The editors' dashboard: server-rendered pages over the stored clusters.

Pages are Jinja2 templates with autoescape on; the only script is a static
file (`static/dashboard.js`) that polls the Now list and marks what is new,
so the Content-Security-Policy can forbid inline scripts outright. Every
state change is a POST carrying the session's CSRF token.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from aggregator.config import Settings
from aggregator.digest.records import isoformat
from aggregator.fetch import UnsafeURLError, check_url
from aggregator.models import Outlet
from aggregator.store import Busy, Store
from aggregator.store.dashboard import MERGE, SPLIT, DashboardStore, apply_corrections
from aggregator.store.mail import MailStore
from aggregator.store.schema import row_id
from aggregator.web import api, auth, present
from aggregator.web.state import (
    VIEW_SECONDS,
    Dashboard,
    ViewCache,
    clean_text,
    hours_param,
    int_param,
    state,
    story_id,
    text_param,
    utcnow,
)

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates" / "dashboard"
STATIC = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "aggregator_session"
SECRET_NAME = "dashboard-session"
# Outlets whose first report in a story is this recent are marked as new.
GROWTH_WINDOW = timedelta(hours=2)
HOURS_CHOICES = (6, 12, 24, 48, 72)
# The longest outlet name (the `outlets.name` column).
OUTLET_LENGTH = 200
# Seconds a correction waits for a clustering pass to finish before asking to retry.
CORRECTION_WAIT = 10.0


def _templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe_link"] = present.safe_link
    env.filters["iso"] = isoformat
    env.globals["story_title"] = present.story_title
    return Jinja2Templates(env=env)


TEMPLATES_ENV = _templates()


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    dashboard = state(request)
    now = dashboard.clock()

    def local(moment: datetime | None, fmt: str = "%H:%M") -> str:
        return "" if moment is None else moment.astimezone(dashboard.zone).strftime(fmt)

    def ago(moment: datetime | None) -> str:
        if moment is None:
            return "never"
        minutes = int((now - moment).total_seconds() // 60)
        if minutes < 1:
            return "just now"
        if minutes < 60:
            return f"{minutes} min ago"
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min ago" if hours < 48 else f"{hours // 24} days ago"

    base = {
        "user": auth.session_user(request),
        "csrf": auth.csrf_token(request.session),
        "csrf_field": auth.CSRF_FIELD,
        "now": now,
        "local": local,
        "ago": ago,
        "zone": dashboard.settings.dashboard.timezone,
        "path": request.url.path,
        "poll_seconds": dashboard.settings.dashboard.poll_seconds,
        "hours_choices": HOURS_CHOICES,
    }
    return TEMPLATES_ENV.TemplateResponse(request, name, base | context, status_code=status)


Handler = Callable[[Request], Awaitable[Response]]


def editor_page(handler: Handler) -> Handler:
    """Only for logged-in editors; others are sent to the login page and back."""

    async def guarded(request: Request) -> Response:
        if auth.session_user(request) is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        return await handler(request)

    return guarded


def editor_fragment(handler: Handler) -> Handler:
    """Like `editor_page` for HTML the page's script fetches: 401 instead of the login page.

    A redirect would be followed by `fetch`, and the login form put into the list.
    """

    async def guarded(request: Request) -> Response:
        if auth.session_user(request) is None:
            return PlainTextResponse("the session has ended; log in again", status_code=401)
        return await handler(request)

    return guarded


async def checked_form(request: Request) -> FormData:
    """The POSTed form of a logged-in editor, with a valid CSRF token; 403 otherwise.

    The session is checked again once the body is in: a body sent slowly could
    otherwise arrive after the editor logged out or was removed.
    """
    form = await request.form()
    token = form.get(auth.CSRF_FIELD)
    if not auth.csrf_ok(request.session, token if isinstance(token, str) else None):
        raise HTTPException(403, "the form has expired or did not come from this dashboard")
    dashboard = state(request)
    if auth.session_user(request) is None or not await run_in_threadpool(
        auth.session_current, request.session, dashboard.data, dashboard.clock()
    ):
        raise HTTPException(403, "log in first")
    return form


def form_int(form: FormData, name: str) -> int:
    number = row_id((_str(form, name) or "").strip())
    if number is None:
        raise HTTPException(400, f"{name}: expected a story or entry number")
    return number


def form_text(form: FormData, name: str, limit: int | None = None) -> str:
    """A form field as `text_param` cleans it (PostgreSQL refuses NUL); 400 if over `limit`."""
    value = clean_text(_str(form, name) or "")
    if limit is not None and len(value) > limit:
        raise HTTPException(400, f"{name}: at most {limit} characters, not {len(value)}")
    return value


# -- login ----------------------------------------------------------------


def _next_path(raw: str | None) -> str:
    """Where to go after logging in: only a path on this site, never another host."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or urlsplit(raw).netloc:
        return "/"
    return raw


async def login_page(request: Request) -> Response:
    return render(request, "login.html", {"next": _next_path(request.query_params.get("next"))})


async def login(request: Request) -> Response:
    dashboard = state(request)
    form = await request.form()
    if not auth.csrf_ok(request.session, _str(form, auth.CSRF_FIELD)):
        raise HTTPException(403, "the login form has expired; reload the page")
    name = form_text(form, "name", auth.NAME_LENGTH)
    password = _str(form, "password") or ""
    target = _next_path(_str(form, "next"))
    client = request.client.host if request.client else "unknown"
    attempt = dashboard.throttle.attempt(client, name)
    if attempt is None:
        context = {"error": "Too many failed attempts. Wait a few minutes.", "next": target}
        return render(request, "login.html", context, status=429)
    stored = await run_in_threadpool(dashboard.data.password_hash, name)
    # Checked for an unknown name too (against a dummy hash): timing tells nothing.
    verified = await run_in_threadpool(auth.verify_password, stored, password)
    now, lifetime = dashboard.clock(), session_lifetime(dashboard.settings)
    # log_in fails for an editor removed, or given a new password, since the check.
    if (
        not verified
        or stored is None
        or not await run_in_threadpool(
            auth.log_in, request.session, dashboard.data, name, stored, now, lifetime
        )
    ):
        context = {"error": "Unknown name or wrong password.", "next": target, "name": name}
        return render(request, "login.html", context, status=401)
    dashboard.throttle.succeeded(client, name, attempt)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    await checked_form(request)
    await run_in_threadpool(auth.log_out, request.session, state(request).data)
    return RedirectResponse("/login", status_code=303)


def _str(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


# -- views ------------------------------------------------------------------


async def _now_context(request: Request) -> dict[str, Any]:
    dashboard = state(request)
    hours = hours_param(request)
    now = dashboard.clock()
    limit = dashboard.settings.dashboard.max_stories
    growth_since = now - GROWTH_WINDOW
    stories = await run_in_threadpool(
        dashboard.views.get,
        ("now", hours, limit, now.replace(second=0, microsecond=0)),
        lambda: dashboard.data.now(now - timedelta(hours=hours), growth_since, limit),
    )
    joined = {s.cluster.id: present.joined_since(s.cluster, growth_since) for s in stories}
    return {"stories": stories, "hours": hours, "joined": joined}


@editor_page
async def now_view(request: Request) -> Response:
    return render(request, "now.html", await _now_context(request))


@editor_fragment
async def now_fragment(request: Request) -> Response:
    return render(request, "now_list.html", await _now_context(request))


def _gap_outlet(request: Request) -> list[str]:
    chosen = text_param(request, "outlet")
    return [chosen] if chosen else list(state(request).settings.dashboard.home_outlets)


@editor_page
async def gaps_view(request: Request) -> Response:
    dashboard = state(request)
    settings = dashboard.settings.dashboard
    hours = hours_param(request)
    k = int_param(request, "min_outlets", settings.gap_min_outlets, 1, 1000)
    home = _gap_outlet(request)
    since = dashboard.clock() - timedelta(hours=hours)
    key = (tuple(home), hours, k, since.replace(second=0, microsecond=0))
    gaps = await run_in_threadpool(
        dashboard.views.get, ("gaps", *key), lambda: dashboard.data.gaps(home, since, k, 100)
    )
    scoops = await run_in_threadpool(
        dashboard.views.get, ("scoops", *key), lambda: dashboard.data.scoops(home, since, 50)
    )
    outlets = await run_in_threadpool(dashboard.data.outlets)
    context = {
        "gaps": gaps,
        "scoops": scoops,
        "home": home,
        "outlets": outlets,
        "min_outlets": k,
        "hours": hours,
        "configured": settings.home_outlets,
    }
    return render(request, "gaps.html", context)


async def _matrix(request: Request) -> tuple[present.Matrix, int, str | None]:
    dashboard = state(request)
    hours = hours_param(request)
    now = dashboard.clock()
    limit = int_param(request, "limit", 30, 1, 200)
    stories = await run_in_threadpool(
        dashboard.data.now, now - timedelta(hours=hours), now - GROWTH_WINDOW, limit
    )
    sort = request.query_params.get("sort") or None
    return present.matrix([s.cluster for s in stories], sort), hours, sort


@editor_page
async def matrix_view(request: Request) -> Response:
    table, hours, sort = await _matrix(request)
    return render(request, "matrix.html", {"matrix": table, "hours": hours, "sort": sort})


@editor_page
async def matrix_csv(request: Request) -> Response:
    table, hours, _ = await _matrix(request)
    return PlainTextResponse(
        present.matrix_csv(table),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="matrix-{hours}h.csv"'},
    )


@editor_page
async def story_view(request: Request) -> Response:
    dashboard = state(request)
    story = story_id(request)
    found = await run_in_threadpool(dashboard.data.clusters, [story])
    cluster = found.get(story)
    if cluster is None:
        return render(request, "missing.html", {"story": story}, status=404)
    ids = [entry.id for entry in cluster.entries if entry.id is not None]
    history = await run_in_threadpool(dashboard.data.title_history, ids)
    matched_ids = [m.matched_id for m in cluster.matches.values() if m.matched_id is not None]
    matched = await run_in_threadpool(dashboard.data.entries_by_id, matched_ids)
    context = {"cluster": cluster, "history": history, "matched": matched}
    return render(request, "story.html", context)


def _correct_locked(dashboard: Dashboard, kind: str, first: int, second: int, user: str) -> None:
    """Record and apply an editor's correction under the run lock.

    A clustering pass works from what the database held when it began: a
    merge or split landing between two of its batches could remove a cluster
    it still fills, or leave a story in three pieces.
    """
    with dashboard.store.exclusive("run", wait=CORRECTION_WAIT):
        dashboard.data.add_correction(kind, first, second, user, dashboard.clock())
        apply_corrections(dashboard.store)


async def _correct(request: Request, kind: str) -> Response:
    dashboard = state(request)
    form = await checked_form(request)
    story = story_id(request)
    user = auth.session_user(request) or ""
    if kind == SPLIT:
        entry_id = form_int(form, "entry_id")
        clusters = await run_in_threadpool(dashboard.data.clusters, [story])
        members = [e.id for e in clusters[story].entries] if story in clusters else []
        others = [member for member in members if member is not None and member != entry_id]
        if entry_id not in members or not others:
            raise HTTPException(400, f"entry {entry_id} cannot be split out of story {story}")
        # `second` stays behind: the labelled example keeps the story the entry left.
        first, second, target = entry_id, others[0], story
    else:
        other = form_int(form, "other_story")
        found = await run_in_threadpool(dashboard.data.entries_by_id, [story, other])
        if other not in found or story not in found or other == story:
            raise HTTPException(400, f"story {other} cannot be merged into story {story}")
        first, second, target = story, other, story
    try:
        await run_in_threadpool(_correct_locked, dashboard, kind, first, second, user)
    except Busy:
        raise HTTPException(
            503, "The stories are being clustered right now; please try again in a minute."
        ) from None
    dashboard.views.clear()
    # After a split that moved the founder away, the story lives on under a new id.
    remaining = await run_in_threadpool(dashboard.data.entries_by_id, [second])
    new_id = remaining[second].cluster_id if second in remaining else target
    return RedirectResponse(f"/story/{new_id or target}", status_code=303)


async def split(request: Request) -> Response:
    return await _correct(request, SPLIT)


async def merge(request: Request) -> Response:
    return await _correct(request, MERGE)


@editor_page
async def search_view(request: Request) -> Response:
    dashboard = state(request)
    params = await run_in_threadpool(api.search_params, request, dashboard)
    hits = await run_in_threadpool(api.run_search, dashboard.data, params)
    outlets = await run_in_threadpool(dashboard.data.outlets)
    context = {"hits": hits, "params": params, "outlets": outlets}
    return render(request, "search.html", context)


@editor_page
async def feeds_view(request: Request) -> Response:
    dashboard = state(request)
    rows = await run_in_threadpool(dashboard.store.feed_status)
    message = request.query_params.get("message")
    return render(request, "feeds.html", {"rows": rows, "message": message})


async def feeds_add(request: Request) -> Response:
    dashboard = state(request)
    form = await checked_form(request)
    url = form_text(form, "url")
    outlet = Outlet.for_feed(url, form_text(form, "outlet"))
    if len(outlet.name) > OUTLET_LENGTH:
        message = f"Not added: an outlet name has at most {OUTLET_LENGTH} characters."
        return await _feeds_message(request, message, 400)
    try:
        await run_in_threadpool(
            check_url, url, allow_private=dashboard.settings.fetch.allow_private_addresses
        )
    except UnsafeURLError as exc:
        return await _feeds_message(request, f"Not added: {url}: {exc}", 400)
    now = dashboard.clock()
    interval = int(dashboard.settings.fetch.interval_delta.total_seconds())
    _, new = await run_in_threadpool(
        lambda: dashboard.store.add_feed(
            url, outlet, source="web", interval_seconds=interval, now=now
        )
    )
    text = f"Added {url} ({outlet.name})." if new else f"{url} was already there."
    return RedirectResponse(f"/feeds?message={quote(text)}", status_code=303)


async def _feeds_message(request: Request, message: str, status: int) -> Response:
    rows = await run_in_threadpool(state(request).store.feed_status)
    return render(request, "feeds.html", {"rows": rows, "message": message}, status=status)


async def feeds_toggle(request: Request) -> Response:
    dashboard = state(request)
    form = await checked_form(request)
    url = form_text(form, "url")
    enable = _str(form, "action") == "enable"
    user = auth.session_user(request)
    found = await run_in_threadpool(
        lambda: dashboard.store.set_enabled(
            url, enable, reason=None if enable else f"disabled by {user}", now=dashboard.clock()
        )
    )
    if not found:
        return await _feeds_message(request, f"No feed {url}", 404)
    text = f"{'Enabled' if enable else 'Disabled'} {url}."
    return RedirectResponse(f"/feeds?message={quote(text)}", status_code=303)


@editor_page
async def chart_view(request: Request) -> Response:
    dashboard = state(request)
    hours = hours_param(request)
    until = dashboard.clock()
    since = until - timedelta(hours=hours)
    rows = await run_in_threadpool(dashboard.data.hourly, since, until)
    outlets = await run_in_threadpool(dashboard.data.per_outlet, since, until)
    peak = max((n for _, n in outlets), default=1)
    bars = present.chart(rows, since, until, dashboard.zone)
    context = {"chart": bars, "outlets": outlets, "peak": peak, "hours": hours}
    return render(request, "chart.html", context)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return api.error(exc.status_code, exc.detail)
    return render(request, "error.html", {"message": exc.detail}, status=exc.status_code)


# -- the application --------------------------------------------------------


def page_routes() -> list[BaseRoute]:
    return [
        Route("/", now_view),
        Route("/fragments/now", now_fragment),
        Route("/gaps", gaps_view),
        Route("/matrix", matrix_view),
        Route("/matrix.csv", matrix_csv),
        Route("/story/{story_id}", story_view),
        Route("/story/{story_id}/split", split, methods=["POST"]),
        Route("/story/{story_id}/merge", merge, methods=["POST"]),
        Route("/search", search_view),
        Route("/feeds", feeds_view),
        Route("/feeds/add", feeds_add, methods=["POST"]),
        Route("/feeds/toggle", feeds_toggle, methods=["POST"]),
        Route("/chart", chart_view),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


def session_lifetime(settings: Settings) -> timedelta:
    """How long a login lasts: the cookie's max_age and its `sessions` row's expiry."""
    return timedelta(hours=settings.dashboard.session_hours)


def session_secret(settings: Settings, store: Store) -> str:
    """The cookie-signing key: from the environment if set, else one kept in the database."""
    return os.environ.get(settings.dashboard.secret_env) or MailStore(store).secret(SECRET_NAME)


def create_dashboard_app(
    settings: Settings, store: Store, *, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    """The dashboard and its API as one ASGI app (mounted by `aggregator.web.create_app`)."""
    options = settings.dashboard
    data = DashboardStore(store)
    app = Starlette(
        routes=[*api.routes(), *page_routes()],
        middleware=[
            Middleware(auth.SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=session_secret(settings, store),
                session_cookie=SESSION_COOKIE,
                max_age=int(session_lifetime(settings).total_seconds()),
                same_site="lax",
                https_only=settings.web.base_url.startswith("https://"),
            ),
            Middleware(auth.SessionCheck, store=data, clock=clock),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.dashboard = Dashboard(
        settings=settings,
        store=store,
        data=data,
        throttle=auth.LoginThrottle(
            options.login_attempts, options.login_window_delta.total_seconds()
        ),
        zone=ZoneInfo(options.timezone),
        clock=clock,
        # Half the poll interval at most: a poll never gets an answer older than one poll.
        views=ViewCache(min(VIEW_SECONDS, options.poll_seconds / 2)),
    )
    return app


def routes(
    settings: Settings, store: Store, *, clock: Callable[[], datetime] = utcnow
) -> list[BaseRoute]:
    """The dashboard as routes for `create_app(..., routes=...)`: mounted at the root."""
    return [Mount("", app=create_dashboard_app(settings, store, clock=clock))]
