"""Benchmark: one digest period mailed to 1,000 subscribers through a local aiosmtpd server.

    python bench/mail_send.py [--subscribers 1000]

Prints the seconds for the whole `send_due` (compose, SMTP over one
connection, one commit per message) and the rate. The issue asks for under
60 s for 1,000 subscribers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mailsetup import END, NOW, START, fill, settings, subscribe  # noqa: E402
from smtpserver import SmtpServer  # noqa: E402

from aggregator.mail.service import send_due  # noqa: E402
from aggregator.store import Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, SmtpServer() as smtp:
        config = settings(Path(folder), smtp_port=smtp.port)
        store = Store(config.database_url)
        fill(store)
        subscribe(store, *[f"reader{n:05d}@example.org" for n in range(args.subscribers)])
        started = time.perf_counter()
        summary = send_due(store, config, config.digests[0], START, END, NOW)
        seconds = time.perf_counter() - started
        assert summary.sent == args.subscribers, summary.line()
        assert len(smtp.received) == args.subscribers
        print(
            f"{args.subscribers} subscribers: {seconds:.2f} s "
            f"({args.subscribers / seconds:.0f} messages/s, {smtp.sessions} SMTP connection)"
        )


if __name__ == "__main__":
    main()
