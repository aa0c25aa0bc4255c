"""The dashboard at newsroom scale: 1,000,000 entries from 2,000 feeds over 30 days.

Run from the project root:

    python bench/dashboard.py [--db /tmp/dashboard-bench.db] [--entries 1000000]

1. Generates the database (once; reused when the file exists): 400 outlets
   with 5 feeds each, stories covered by 1 to 60 outlets (most by one), each
   entry clustered, `clusters` figures filled, the FTS index built by the
   schema's triggers, exactly as the pipeline leaves them. Every view is
   asked at the database's own "now" (its newest entry), so a file generated
   days ago measures the same last 24 hours as a new one.
2. Times the pages an editor keeps open, in process through the ASGI app
   (query + template): the Now view for 24 h and the gaps view, 30 runs
   each, cold (the shared view cache emptied before every request: what the
   first poller of a few seconds waits for) and warm (as the other pollers
   get it); reports the median and the 95th percentile.
3. Starts `web` in its own process (uvicorn on 127.0.0.1) and sends
   GET /api/stories?hours=24 with a bearer token from wrk (Debian's `wrk`,
   15 s, 16 connections) or, without it, a bounded Python client (fixed
   request count, concurrency and time limit); reports requests per second
   and latency.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from aggregator.config import Settings
from aggregator.store import Store
from aggregator.store.dashboard import DashboardStore
from aggregator.web import auth, create_app
from aggregator.web.dashboard import create_dashboard_app
from aggregator.web.state import ViewCache

OUTLETS = 400
FEEDS_PER_OUTLET = 5
DAYS = 30
HOME = "outlet-000.de"
PASSWORD = "benchmark password"
WORDS = [
    "Bundestag",
    "Regierung",
    "Wahl",
    "Sturm",
    "Bahn",
    "Streik",
    "Inflation",
    "Zinsen",
    "Fußball",
    "Klima",
    "Energie",
    "Gericht",
    "Polizei",
    "Ukraine",
    "Haushalt",
    "Schule",
    "Gesundheit",
    "Rente",
    "Migration",
    "Verkehr",
    "München",
    "Berlin",
    "Hamburg",
    "Köln",
    "Sachsen",
    "Bayern",
    "Europa",
    "Gipfel",
    "Kanzler",
    "Ministerin",
    "Bericht",
    "Studie",
]


def settings_for(db: Path) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{db}"},
            "dashboard": {"home_outlets": [HOME]},
            "base_dir": db.parent,
        }
    )


def generate(db: Path, total: int, now: datetime) -> None:
    """Write the database directly with SQL: the matcher is not what is measured here."""
    store = Store(f"sqlite:///{db}")
    rng = random.Random(7)
    start = now - timedelta(days=DAYS)
    created = now.replace(tzinfo=None) - timedelta(days=DAYS + 1)
    with store.engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        cur.executemany(
            "INSERT INTO outlets (id, name, language) VALUES (?, ?, 'de')",
            [(i + 1, f"outlet-{i:03d}.de") for i in range(OUTLETS)],
        )
        cur.executemany(
            "INSERT INTO feeds (id, url, outlet_id, source, interval_seconds, consecutive_errors,"
            " disabled, created_at, last_status) VALUES (?, ?, ?, 'config', 1800, 0, 0, ?, 'ok')",
            [
                (
                    o * FEEDS_PER_OUTLET + f + 1,
                    f"https://outlet-{o:03d}.de/feed{f}.xml",
                    o + 1,
                    created,
                )
                for o in range(OUTLETS)
                for f in range(FEEDS_PER_OUTLET)
            ],
        )
        entry_id = 0
        batch: list[tuple[object, ...]] = []
        cluster_rows: list[tuple[object, ...]] = []
        while entry_id < total:
            # Most stories one outlet; some widely covered (Zipf-like).
            width = min(60, max(1, int(rng.paretovariate(1.2))))
            outlets = rng.sample(range(OUTLETS), width)
            first = start + timedelta(seconds=rng.uniform(0, DAYS * 86400))
            topic = " ".join(rng.sample(WORDS, 4))
            founder = entry_id + 1
            times = []
            for rank, outlet in enumerate(outlets):
                entry_id += 1
                published = first + timedelta(minutes=rank * rng.uniform(1, 40))
                published = min(published, now - timedelta(seconds=1))
                times.append(published)
                feed = outlet * FEEDS_PER_OUTLET + rng.randrange(FEEDS_PER_OUTLET) + 1
                naive = published.replace(tzinfo=None)
                batch.append(
                    (
                        entry_id,
                        feed,
                        f"g{entry_id}",
                        f"https://o{outlet}.de/{entry_id}",
                        f"{topic}: Meldung {entry_id}",
                        f"{topic} – ausführlicher Bericht.",
                        naive,
                        f"h{entry_id}",
                        naive,
                        naive,
                        founder,
                        None if rank == 0 else founder,
                        None if rank == 0 else 80.0,
                    )
                )
                if entry_id >= total:
                    break
            cluster_rows.append(
                (
                    founder,
                    min(times).replace(tzinfo=None),
                    max(times).replace(tzinfo=None),
                    len(times),
                    len(times),
                )
            )
            if len(batch) >= 20000:
                _flush(cur, batch, cluster_rows)
        _flush(cur, batch, cluster_rows)
    store.close()


def _flush(
    cur: object, batch: list[tuple[object, ...]], clusters: list[tuple[object, ...]]
) -> None:
    cur.executemany(  # type: ignore[attr-defined]
        "INSERT INTO clusters (id, first_seen, last_seen, size, outlet_count) VALUES (?,?,?,?,?)",
        clusters,
    )
    cur.executemany(  # type: ignore[attr-defined]
        "INSERT INTO entries (id, feed_id, guid, url, title, summary, published,"
        " published_estimated, content_hash, first_seen_at, updated_at, cluster_id, matched_id,"
        " match_score) VALUES (?,?,?,?,?,?,?,0,?,?,?,?,?,?)",
        batch,
    )
    batch.clear()
    clusters.clear()


def data_now(store: Store) -> datetime:
    """The moment the database was generated for: just after its newest entry."""
    with store.engine.begin() as conn:
        latest = conn.execute(text("SELECT max(published) FROM entries")).scalar_one()
    return datetime.fromisoformat(str(latest)).replace(tzinfo=UTC) + timedelta(seconds=1)


def dashboard_app(settings: Settings, store: Store, now: datetime) -> tuple[Starlette, ViewCache]:
    """What `web` serves, with its clock stopped at `now`; and the app's shared view cache."""
    dashboard = create_dashboard_app(settings, store, clock=lambda: now)
    app = create_app(settings, store, routes=[Mount("", app=dashboard)])
    return app, dashboard.state.dashboard.views


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(call: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and 95th percentile of `runs` calls, in milliseconds."""
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def emptied_first(views: ViewCache, call: Callable[[], object]) -> Callable[[], None]:
    """`call` after emptying the view cache: the request of the first poller in a while."""

    def cold() -> None:
        views.clear()
        call()

    return cold


def get_page(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)


def log_in(client: TestClient) -> None:
    page = client.get("/login").text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post(
        "/login", data={"csrf_token": token, "name": "bench", "password": PASSWORD}
    )
    assert response.status_code == 200, response.status_code


async def load(url: str, token: str, requests: int, concurrency: int, limit: float) -> str:
    """A bounded closed-loop client: `requests` in total, `concurrency` at once, `limit` s."""
    latencies: list[float] = []
    errors = 0
    remaining = requests
    deadline = time.monotonic() + limit
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal remaining, errors
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            began = time.perf_counter()
            response = await client.get(url, headers=headers)
            latencies.append((time.perf_counter() - began) * 1000)
            errors += response.status_code != 200

    began = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return (
        f"{len(latencies)} requests in {elapsed:.1f} s = {len(latencies) / elapsed:.0f} req/s, "
        f"{errors} errors, latency median {statistics.median(latencies):.1f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95) - 1]:.1f} ms"
    )


def serve(db: Path, port: int) -> None:
    """What `web` runs, on the benchmark database."""
    import uvicorn

    settings = settings_for(db)
    store = Store(settings.database_url)
    app, _ = dashboard_app(settings, store, data_now(store))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/dashboard-bench.db"))
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.db, args.serve)
        return
    print(f"load average at start: {load_average()}")
    if not args.db.exists():
        began = time.perf_counter()
        generate(args.db, args.entries, datetime.now(UTC))
        print(f"generated {args.entries} entries in {time.perf_counter() - began:.0f} s")
    settings = settings_for(args.db)
    store = Store(settings.database_url)
    now = data_now(store)
    data = DashboardStore(store)
    data.set_password("bench", auth.hash_password(PASSWORD), now)
    token = auth.new_token()
    data.add_token("bench", auth.token_hash(token), now)
    with store.engine.begin() as conn:
        figures = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM feeds),"
                " (SELECT count(*) FROM clusters)"
            )
        ).one()
    print(
        f"database: {figures[0]} entries, {figures[1]} feeds, {figures[2]} stories,"
        f" asked at {now:%Y-%m-%d %H:%M} UTC"
    )

    app, views = dashboard_app(settings, store, now)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        log_in(client)
        for label, path in (
            ("Now 24 h", "/?hours=24"),
            ("gaps 24 h", "/gaps?hours=24"),
            ("API stories", "/api/stories?hours=24"),
        ):
            get = partial(get_page, client, path)
            timed(get, 3)  # warm the database's page cache
            median, p95 = timed(emptied_first(views, get), 30)
            print(f"{label}, cold: median {median:.0f} ms, p95 {p95:.0f} ms")
            median, p95 = timed(get, 30)
            print(f"{label}, warm: median {median:.0f} ms, p95 {p95:.0f} ms")
    # The gaps query alone, without template or view cache.
    median, p95 = timed(partial(data.gaps, [HOME], now - timedelta(hours=24), 3, 100), 30)
    print(f"gaps query 24 h, K=3, cold: median {median:.0f} ms, p95 {p95:.0f} ms")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, __file__, "--db", str(args.db), "--serve", str(port)]
    )
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/api/stories?hours=24"
        if shutil.which("wrk"):
            # wrk's C client keeps up with the server; the Python client parses ~0.8 MB
            # answers slower than the server writes them.
            report = subprocess.run(
                [
                    "wrk",
                    "-t2",
                    f"-c{args.concurrency}",
                    "-d15s",
                    "--latency",
                    "-H",
                    f"Authorization: Bearer {token}",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            wanted = ("Requests/sec", "50%", "99%", "requests in", "Non-2xx", "Socket errors")
            for line in report.splitlines():
                if any(word in line for word in wanted):
                    print("API load (wrk):", line.strip())
        else:
            print("API load:", asyncio.run(load(url, token, args.requests, args.concurrency, 60.0)))
    finally:
        server.terminate()
        server.wait(10)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
