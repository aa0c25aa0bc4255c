"""Writing digest files: names, folders, and atomic replacement on real files."""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_digest import END, START, sample_digest

from aggregator.config import DigestSettings
from aggregator.deliver import digest_filename, write_digest, write_file
from aggregator.models import Cluster


def test_filename_names_the_digest_and_its_period_in_utc() -> None:
    start = datetime(2026, 11, 24, 7, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert (
        digest_filename("daily", start, start + timedelta(days=1), "html")
        == "daily_2026-11-24T0600Z_2026-11-25T0600Z.html"
    )
    assert (
        digest_filename("daily", START, END, "md") == "daily_2026-11-24T0500Z_2026-11-25T0500Z.md"
    )
    odd = START + timedelta(seconds=30)
    assert digest_filename("hourly", odd, END, "atom") == (
        "hourly_2026-11-24T050030Z_2026-11-25T0500Z.atom"
    )


@pytest.mark.parametrize(
    ("name", "start", "fmt", "message"),
    [
        ("../etc", START, "html", "may only contain"),
        ("daily", START.replace(tzinfo=None), "html", "no time zone"),
        ("daily", START, "pdf", "unknown digest format 'pdf'"),
    ],
)
def test_filename_rejects_bad_input(name: str, start: datetime, fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        digest_filename(name, start, END, fmt)


def test_write_file_creates_folders_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "digest.md"
    write_file(target, "# Übersicht „heute“\n")
    write_file(target, "# Zweite Fassung\n")
    assert target.read_text(encoding="utf-8") == "# Zweite Fassung\n"
    assert os.listdir(target.parent) == ["digest.md"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_file_removes_what_a_killed_writer_left_but_not_a_writer_at_work(
    tmp_path: Path,
) -> None:
    target = tmp_path / "daily.md"
    stale = tmp_path / ".daily.md.k1ll3d.tmp"
    working = tmp_path / ".daily.md.w0rk1n.tmp"
    other = tmp_path / ".weekly.md.k1ll3d.tmp"
    for leftover in (stale, working, other):
        leftover.write_text("half a digest")
    two_hours_ago = time.time() - 7200
    for old in (stale, other):
        os.utime(old, (two_hours_ago, two_hours_ago))
    write_file(target, "# Übersicht\n")
    assert not stale.exists()
    assert working.exists() and other.exists()  # young, or another file's
    assert target.read_text(encoding="utf-8") == "# Übersicht\n"


def test_write_file_keeps_newlines_as_given(tmp_path: Path) -> None:
    target = tmp_path / "digest.txt"
    write_file(target, "eins\r\nzwei\n")
    assert target.read_bytes() == b"eins\r\nzwei\n"


def test_a_failure_mid_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "digest.html"
    write_file(target, "<p>alt</p>")
    # A lone surrogate cannot be encoded: the write fails after much was written.
    with pytest.raises(UnicodeEncodeError):
        write_file(target, "<p>neu</p>" * 100_000 + "\ud800")
    assert target.read_text(encoding="utf-8") == "<p>alt</p>"
    assert os.listdir(tmp_path) == ["digest.html"]


def settings(**changes: object) -> DigestSettings:
    return DigestSettings.model_validate(
        {"name": "daily", "timezone": "Europe/Berlin", "max_stories": 2, **changes}
    )


def test_write_digest_writes_every_format(tmp_path: Path) -> None:
    base = tmp_path / "digests"
    formats = ["html", "md", "txt", "json", "atom"]
    paths = write_digest(sample_digest(), settings(formats=formats), base)
    stem = "daily_2026-11-24T0500Z_2026-11-25T0500Z"
    assert paths == [base / f"{stem}.{fmt}" for fmt in formats]
    assert sorted(os.listdir(base)) == sorted(p.name for p in paths)
    record = json.loads(paths[3].read_text(encoding="utf-8"))
    assert len(record["clusters"]) == 3, "JSON ignores max_stories"
    assert paths[0].read_text(encoding="utf-8").count('<section class="story"') == 2
    assert "+01:00" in paths[1].read_text(encoding="utf-8"), "times in the digest's zone"


def test_write_digest_with_explicit_formats(tmp_path: Path) -> None:
    paths = write_digest(sample_digest(), settings(), tmp_path, ["json"])
    assert [p.suffix for p in paths] == [".json"]


def test_a_digest_that_fails_to_render_leaves_every_old_file_intact(tmp_path: Path) -> None:
    good = sample_digest()
    paths = write_digest(good, settings(formats=["html", "json"]), tmp_path)
    before = {p: p.read_bytes() for p in paths}
    # An empty cluster breaks only the JSON, which is written after the HTML: if files were
    # written as they were rendered, the HTML (with its new title) would already be replaced.
    broken = replace(good, title="Neue Fassung", clusters=[*good.clusters, Cluster(99)])
    with pytest.raises(ValueError):
        write_digest(broken, settings(formats=["html", "json"]), tmp_path)
    assert {p: p.read_bytes() for p in paths} == before
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)
