"""`send NAME --since 24h` without --until: the scheduled period; a re-run mails nobody twice."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result
from configfile import write_config
from mailsetup import fill, loopback_smtp
from smtpserver import SmtpServer

from aggregator.cli import main
from aggregator.config import load
from aggregator.pipeline import scheduled_period, utcnow
from aggregator.store import Store


def _cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_a_relative_since_rerun_mails_nobody_twice(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        config = write_config(
            tmp_path / "mail.toml",
            {
                "database": {"url": f"sqlite:///{tmp_path / 'mail.db'}"},
                "smtp": loopback_smtp(smtp.port),
                "digests": [{"name": "daily", "schedule": "0 6 * * *", "period": "24h"}],
            },
        )
        start, end = scheduled_period(load(config).digest("daily"), utcnow())
        fill(Store(f"sqlite:///{tmp_path / 'mail.db'}"), start)
        assert (
            _cli(config, "subscribers", "add", "anna@example.org", "--digest", "daily").exit_code
            == 0
        )
        first = _cli(config, "send", "daily", "--since", "24h")
        assert first.exit_code == 0, first.output
        assert f"{start:%Y-%m-%d %H:%M}Z – {end:%Y-%m-%d %H:%M}Z: 1 sent" in first.output
        for again in (("--since", "24h"), ()):  # a re-run, and the default period: the same
            rerun = _cli(config, "send", "daily", *again)
            assert rerun.exit_code == 0, rerun.output
            assert "0 sent" in rerun.output and "1 decided earlier" in rerun.output
        assert smtp.recipients() == ["anna@example.org"]
        late = _cli(config, "send", "daily", "--since", f"{end:%Y-%m-%dT%H:%M}Z")
        assert late.exit_code == 2
        assert "must be before the end of the latest scheduled period" in late.output
