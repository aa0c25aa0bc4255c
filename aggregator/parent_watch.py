"""Worker processes that end when the process that started them is gone.

A run killed with SIGKILL cannot shut its process pools down, and idle
workers would wait on their queue forever; cron would pile them up. Kept in
a module of its own, importing nothing of the program, because a worker
imports the module of every function it runs.
"""

from __future__ import annotations

import os
import threading
import time


def exit_with(parent: int) -> None:
    """Pool initializer: end this process within a second of process `parent` ending."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
