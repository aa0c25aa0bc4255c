"""Configuration: the documented keys, and one clear line for every mistake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import config
from aggregator.config import ConfigError
from aggregator.durations import parse_duration, parse_when

CONTRACT = """
[database]
url = "sqlite:///data/aggregator.db"
[fetch]
allow_private_addresses = false
[[outlets]]
name = "news.de"
language = "de"
feeds = ["https://www.news.de/rss/politik/"]
[[digests]]
name = "daily"
schedule = "0 6 * * *"
timezone = "Europe/Berlin"
period = "24h"
formats = ["html", "md", "json", "atom"]
output_dir = "digests"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "aggregator.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_architecture_contract_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    settings = config.load(write(tmp_path, CONTRACT))
    folder = (tmp_path / "conf").resolve()
    assert settings.database_url == f"sqlite:///{folder / 'data' / 'aggregator.db'}"
    daily = settings.digest("daily")
    assert settings.resolve(daily.output_dir) == folder / "digests"
    assert daily.period_delta == timedelta(hours=24)
    assert settings.outlets[0].feeds == ["https://www.news.de/rss/politik/"]
    assert settings.feed_url("sample/a.xml") == (folder / "sample" / "a.xml").as_uri()


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[fetch]\nallow_privat_addresses = true\n", "fetch.allow_privat_addresses: unknown key"),
        ("[fetch]\nmax_concurrency = 'many'\n", "fetch.max_concurrency:"),
        (
            "[[outlets]]\nname = 'x'\nfeeds = ['htp://x.de/rss']\n",
            "outlets.0.feeds: 'htp://x.de/rss' is not an http(s) URL",
        ),
        ("[[digests]]\nname = 'd'\ntimezone = 'Mars/Base'\n", "digests.0.timezone: unknown time"),
        ("[[digests]]\nname = 'd'\nschedule = '0 6 * *'\n", "digests.0.schedule:"),
        ("[[digests]]\nname = 'd'\nperiod = 'a day'\n", "digests.0.period: 'a day' is not a"),
        ("[cluster]\nwindow = 72\n", "cluster.window:"),
        ("[database\n", "not valid TOML"),
    ],
)
def test_mistakes_are_refused_with_one_line_naming_file_and_key(
    tmp_path: Path, snippet: str, expected: str
) -> None:
    path = write(tmp_path, snippet)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        config.load(tmp_path / "nope.toml")


def test_durations_and_points_in_time() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_when("24h", now) == now - timedelta(hours=24)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when("2026-11-24", now) == datetime(2026, 11, 24, tzinfo=UTC)
    assert parse_when("2026-11-24T06:00+01:00", now) == datetime(2026, 11, 24, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither an ISO date"):
        parse_when("yesterday-ish", now)


@pytest.mark.parametrize("name", ["example.toml", "sample.toml"])
def test_bundled_configurations_load(name: str) -> None:
    settings = config.load(Path(__file__).resolve().parents[1] / "config" / name)
    assert settings.outlets and settings.digests
