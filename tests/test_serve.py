"""`serve` as a real process: it fetches on its own, writes due digests, and stops cleanly."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from configfile import write_config
from feedserver import FeedServer

from aggregator.store import Store

ROOT = Path(__file__).resolve().parents[1]
FEEDS = ROOT / "tests" / "fixtures" / "feeds"


def wait_for(process: subprocess.Popen[str], condition: object, timeout: float = 20.0) -> None:
    """Until `condition()` holds; fails with what `process` printed if it ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    gone = process.poll() is not None
    if not gone:
        process.kill()
    output, _ = process.communicate(timeout=10)
    why = f"serve exited ({process.returncode})" if gone else f"not so after {timeout:g} s"
    raise AssertionError(f"{why}; serve printed:\n{output}")


def start_serve(config: Path, folder: Path, *options: str) -> subprocess.Popen[str]:
    """`run.py serve` in its own process, its output (both streams) to read."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "--config", str(config), "serve", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=folder,
    )


def test_serve_fetches_writes_digests_and_stops_on_sigterm(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    urls = [
        feed_server.add(
            "/de.xml", (FEEDS / "rss2_de_utf8_umlauts_cdata_entities.xml").read_bytes()
        ),
        feed_server.add("/en.xml", (FEEDS / "atom_en_newsroom.xml").read_bytes()),
    ]
    database = tmp_path / "serve.db"
    config = write_config(
        tmp_path / "serve.toml",
        {
            "database": {"url": f"sqlite:///{database}"},
            "fetch": {"allow_private_addresses": True, "interval": "1h", "min_interval": "1s"},
            "serve": {"poll_interval": "1s", "shutdown_grace": "5s"},
            "outlets": [{"name": "fixture", "language": "de", "feeds": urls}],
            "digests": [
                {
                    "name": "hourly",
                    "schedule": "0 * * * *",
                    "period": "3650d",
                    "formats": ["json"],
                    "output_dir": str(tmp_path / "out"),
                }
            ],
        },
    )
    process = start_serve(config, tmp_path)
    try:
        wait_for(
            process,
            lambda: database.exists() and len(Store(f"sqlite:///{database}").feed_status()) == 2,
        )
        store = Store(f"sqlite:///{database}")
        wait_for(process, lambda: all(row.entries > 0 for row in store.feed_status()))
        wait_for(process, lambda: list((tmp_path / "out").glob("hourly_*.json")))
        # Feeds are not due again for an hour: polling every second must not refetch them.
        time.sleep(2.5)
        assert feed_server.hits("/de.xml") == 1
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "fetched http://127.0.0.1" in output
    assert "stopped" in output


def test_serve_with_web_answers_http_and_stops_with_it(tmp_path: Path) -> None:
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(
        tmp_path / "web.toml",
        {
            "database": {"url": f"sqlite:///{tmp_path / 'web.db'}"},
            "serve": {"poll_interval": "1s", "shutdown_grace": "5s"},
            "web": {"host": "127.0.0.1", "port": port},
        },
    )
    process = start_serve(config, tmp_path, "--web")

    def status() -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stories", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None

    try:
        wait_for(process, lambda: status() is not None)
        assert status() == 401
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert status() is None


def test_sigterm_lets_the_feed_in_flight_finish_and_be_stored(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """SIGTERM stops claiming work, but a fetch under way completes and commits (within grace)."""
    url = feed_server.add(
        "/slow.xml", (FEEDS / "rss2_de_utf8_umlauts_cdata_entities.xml").read_bytes(), delay=2.0
    )
    database = tmp_path / "serve.db"
    config = write_config(
        tmp_path / "serve.toml",
        {
            "database": {"url": f"sqlite:///{database}"},
            "fetch": {"allow_private_addresses": True},
            "serve": {"poll_interval": "60s", "shutdown_grace": "30s"},
            "outlets": [{"name": "slow", "language": "de", "feeds": [url]}],
        },
    )
    process = start_serve(config, tmp_path)
    try:
        wait_for(process, lambda: feed_server.hits("/slow.xml") == 1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=25)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    assert "fetched http://127.0.0.1" in output and "stopped" in output
    with sqlite3.connect(database) as connection:
        [(stored,)] = connection.execute("SELECT count(*) FROM entries").fetchall()
    assert stored > 0, output
