"""The fetch bench's cluster stage alone: one fetched database, clustered again and again.

Run from the project root (needs `pip install -e '.[bench]'`):

    python bench/cluster_stage.py [--feeds 2000] [--items 50] [--runs 3] [--against ../other]

The fetch bench's first cycle is fetch + cluster, and the cluster stage is
the part that varies most between runs of one machine. This script fetches
the fetch bench's generated feeds once (same generator, seed and servers)
into a SQLite file, then runs `Pipeline.cluster()` on a fresh copy of that
file in a new process per run. After each run it hashes what the stage
stored: the entries' assignment columns and the clusters table. A change
meant to be exact must leave both hashes alone.

`--against DIR` alternates the runs with the code of another checkout (its
compiled modules built in place), for A/B figures from one session of a
noisy machine: A B A B ... on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fetch_scale import aggregator_config, generate, start_servers

HERE = Path(__file__).resolve().parent


def fetch_once(config_path: Path) -> None:
    """The fetch bench's fetch stage, nothing clustered."""
    from aggregator import config
    from aggregator.pipeline import Pipeline
    from aggregator.store import Store

    settings = config.load(config_path)
    store = Store(settings.database_url)
    pipeline = Pipeline(settings, store)
    pipeline.sync_config()
    summary = asyncio.run(pipeline.fetch(all_feeds=True))
    store.close()
    print(summary.line(), flush=True)


def cluster_once(config_path: Path) -> None:
    """Child process: `Pipeline.cluster()` on the database of `config_path`, timed; a JSON line."""
    from aggregator import config
    from aggregator.pipeline import Pipeline
    from aggregator.store import Store

    settings = config.load(config_path)
    store = Store(settings.database_url)
    pipeline = Pipeline(settings, store)
    started, cpu = time.perf_counter(), time.process_time()
    clustered = pipeline.cluster()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    store.close()
    database = config_path.parent / "aggregator.db"
    with sqlite3.connect(database) as conn:
        hashes = {
            name: hashlib.sha256(repr(conn.execute(query).fetchall()).encode()).hexdigest()[:16]
            for name, query in (
                (
                    "assignments",
                    "SELECT id, cluster_id, matched_id, match_score, match_reason"
                    " FROM entries ORDER BY id",
                ),
                ("clusters", "SELECT * FROM clusters ORDER BY id"),
            )
        }
    import aggregator

    code = str(Path(aggregator.__file__).parent.parent)
    result = {"seconds": seconds, "cpu": cpu, "clustered": clustered, "code": code, **hashes}
    print(json.dumps(result))


def fetch_into(fetched: Path, folder: Path, work: Path, options: argparse.Namespace) -> Path:
    """The fetch bench's feeds served, fetched into `fetched`; the configuration used."""
    root = folder / "feeds"
    root.mkdir()
    servers, ports = start_servers(root)
    try:
        files = generate(root, ports, options.feeds, options.items, options.seed)
        config_path = aggregator_config(work, files, 40, 4)
        fetch_once(config_path)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait()
    with sqlite3.connect(work / "aggregator.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(work / "aggregator.db", fetched)
    return config_path


def run(code: Path, fetched: Path, work: Path, config_path: Path) -> dict[str, object]:
    """One cluster stage with the package of `code`, on a fresh copy of the fetched database."""
    database = work / "aggregator.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(fetched, database)
    environment = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{HERE}"}
    output = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "cluster-once", str(config_path)],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--keep",
        type=Path,
        help="Keep the fetched database here, and use it instead of fetching if it exists.",
    )
    parser.add_argument(
        "--against", type=Path, help="Another checkout (built) whose runs alternate with these."
    )
    options = parser.parse_args()
    codes = {"this": HERE.parent}
    if options.against:
        codes["against"] = options.against.resolve()
    with tempfile.TemporaryDirectory(prefix="cluster-stage-") as tmp:
        folder = Path(tmp)
        work = folder / "aggregator"
        work.mkdir()
        fetched = options.keep or folder / "fetched.db"
        if fetched.exists():  # clustering reads the database only: no feeds to serve
            config_path = aggregator_config(work, [], 40, 4)
        else:
            config_path = fetch_into(fetched, folder, work, options)
        seconds: dict[str, list[float]] = {name: [] for name in codes}
        for number in range(options.runs):
            for name, code in codes.items():
                result = run(code, fetched, work, config_path)
                seconds[name].append(float(str(result["seconds"])))
                print(
                    f"run {number + 1} {name:8} {result['seconds']:6.2f} s"
                    f"  CPU {result['cpu']:6.2f} s  {result['clustered']} clustered"
                    f"  assignments {result['assignments']}  clusters {result['clusters']}"
                    f"  ({result['code']})",
                    flush=True,
                )
    for name, values in seconds.items():
        print(
            f"{name:8} median {statistics.median(values):.2f} s"
            f"  min {min(values):.2f}  max {max(values):.2f}  ({codes[name]})"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "cluster-once":
        cluster_once(Path(sys.argv[2]))
    else:
        main()
