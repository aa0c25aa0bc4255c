"""One writer at a time for a whole run: `run --once` from cron and `serve` never overlap.

SQLite gets an OS file lock beside the database file (released by the kernel
when the process dies, even by SIGKILL); PostgreSQL a session advisory lock,
released when the connection closes, so several workers on several machines
see the same lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text


class Busy(RuntimeError):
    """Another process holds the lock."""


def _lock_key(name: str) -> int:
    digest = hashlib.sha256(f"aggregator:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _file_lock(path: Path, wait: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"another aggregator run holds {path}") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


@contextmanager
def _advisory_lock(engine: Engine, name: str, wait: float) -> Iterator[None]:
    key = _lock_key(name)
    with engine.connect() as conn:
        deadline = time.monotonic() + wait
        while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            conn.rollback()
            if time.monotonic() >= deadline:
                raise Busy(f"another aggregator run holds the database lock {name!r}")
            time.sleep(0.2)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


@contextmanager
def exclusive(engine: Engine, name: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the lock `name` for the block; raise Busy if it is still taken after `wait` s."""
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        with _advisory_lock(engine, name, wait):
            yield
        return
    database = engine.url.database  # SQLite: the store refuses other backends
    if not database or database == ":memory:":
        yield  # a private in-memory database: nobody else can see it
        return
    with _file_lock(Path(f"{database}.{name}.lock"), wait):
        yield
