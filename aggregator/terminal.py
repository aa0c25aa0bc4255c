"""What every command module shares for talking to the terminal: errors, times, tables.

Kept apart from `cli` so that command modules of other stages (mail, web) can
use them without importing the CLI that registers them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import NoReturn

import click

from aggregator.durations import parse_when
from aggregator.store import Busy, Store

# How long `--wait` waits for another run to finish.
LOCK_WAIT_SECONDS = 6 * 3600.0

WAIT_OPTION = click.option(
    "--wait", is_flag=True, help="If another run is in progress, wait for it instead of exiting."
)


@contextmanager
def run_lock(store: Store, wait: bool) -> Iterator[None]:
    """One run per database (fetch, run, send); a second exits with a clear message (code 3)."""
    try:
        with store.exclusive("run", wait=LOCK_WAIT_SECONDS if wait else 0.0):
            yield
    except Busy as exc:
        click.echo(f"busy: {exc}; not starting (use --wait to wait for it)", err=True)
        sys.exit(3)


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit code 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def when_option(value: str | None, option: str, now: datetime) -> datetime | None:
    """A --since/--until value as a UTC time, or a usage error naming the option."""
    if value is None:
        return None
    try:
        return parse_when(value, now)
    except ValueError as exc:
        fail(f"{option}: {exc}")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns as wide as their widest cell."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
