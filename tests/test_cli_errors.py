"""The command line's one-line errors name the setting and never print a secret."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from configfile import write_config

from aggregator.cli import main


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = "postgresql://news:geheim@127.0.0.1:1/news"
    config = write_config(tmp_path / "db.toml", {"database": {"url": url}})
    result = CliRunner().invoke(main, ["--config", str(config), "status"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: database postgresql://news:***@127.0.0.1:1/news: ")
    assert result.output.count("\n") == 1
    assert "geheim" not in result.output


def test_a_database_the_program_has_no_lock_for_is_refused(tmp_path: Path) -> None:
    """Without the run lock two runs could mail the same digest twice."""
    url = "mysql://news:geheim@127.0.0.1:3306/news"
    config = write_config(tmp_path / "db.toml", {"database": {"url": url}})
    result = CliRunner().invoke(main, ["--config", str(config), "status"])
    assert result.exit_code == 2, result.output
    assert result.output == (
        "error: database mysql://news:***@127.0.0.1:3306/news: "
        "aggregator stores in SQLite or PostgreSQL, not mysql\n"
    )
