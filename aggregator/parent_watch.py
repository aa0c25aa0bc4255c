"""Worker processes that end when the process that started them is gone.

A run killed with SIGKILL cannot shut its process pools down, and idle
workers would wait on their queue forever; cron would pile them up. Kept in
a module of its own, importing nothing of the program, because a worker
imports the module of every function it runs.
"""

from __future__ import annotations

import os
import select
import threading
import time


def exit_with(parent: int) -> None:
    """Pool initializer: end this process as soon as process `parent` ends.

    On Linux a pidfd of the parent becomes readable when it exits, whatever
    reuses its number later; elsewhere the parent is polled once a second.
    """
    try:
        handle = os.pidfd_open(parent)
    except (AttributeError, OSError):  # not Linux 5.3+, or the parent is already gone
        handle = None

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
            os._exit(0)
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
