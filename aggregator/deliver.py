"""Delivering digests as files: one per format, named after the digest and its period.

Files are replaced atomically, so a reader (a web server, a sync tool, a
person) sees either the previous complete file or the new complete file,
and a crash half-way leaves the previous one in place.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

from aggregator.config import DIGEST_FORMATS, DigestSettings
from aggregator.digest.render import render
from aggregator.models import Digest

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Digest files are meant to be published; mkstemp's private 0600 would hide them.
FILE_MODE = 0o644
# A temporary file this much older than now was left by a writer that was killed.
LEFTOVER_SECONDS = 3600


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone (expected an aware time)")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H%M%SZ" if utc.second else "%Y-%m-%dT%H%MZ")


def digest_filename(name: str, period_start: datetime, period_end: datetime, fmt: str) -> str:
    """``daily_2026-11-24T0500Z_2026-11-25T0500Z.html``: sorts by period, names the digest.

    Times are UTC so a name never depends on the server's zone or on summer time;
    seconds appear only when the period does not start on a full minute.
    """
    if not _NAME.match(name):
        raise ValueError(f"digest name {name!r} may only contain letters, digits, '_', '.', '-'")
    if fmt not in DIGEST_FORMATS:
        raise ValueError(
            f"unknown digest format {fmt!r} (expected one of {', '.join(DIGEST_FORMATS)})"
        )
    return f"{name}_{_stamp(period_start)}_{_stamp(period_end)}.{fmt}"


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; other systems cannot open a folder)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_file(path: Path, text: str) -> None:
    """Write UTF-8 text to `path` atomically, creating its folder.

    The text goes to a temporary file in the same folder (so the rename stays on
    one file system), is flushed to disk, then renamed over the target.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)


def _remove_leftovers(path: Path) -> None:
    """Delete the temporary files of `path` that a killed writer left (hidden, never renamed).

    Only old ones: a file of another writer still at work is young.
    """
    cutoff = time.time() - LEFTOVER_SECONDS
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with suppress(FileNotFoundError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


def write_digest(
    digest: Digest, settings: DigestSettings, base: Path, formats: Sequence[str] | None = None
) -> list[Path]:
    """Render every format, then write them into folder `base`; return the paths written.

    All formats are rendered before the first file is touched, so a rendering
    error leaves every file of an earlier run as it was.
    """
    chosen = list(settings.formats if formats is None else formats)
    texts = {
        fmt: render(
            digest,
            fmt,
            max_stories=settings.max_stories,
            min_outlets=settings.min_outlets,
            timezone=settings.timezone,
        )
        for fmt in chosen
    }
    paths = []
    for fmt, text in texts.items():
        path = base / digest_filename(digest.name, digest.period_start, digest.period_end, fmt)
        write_file(path, text)
        paths.append(path)
    return paths
