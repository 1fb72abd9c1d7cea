"""What every long-running event bus worker shares (``consume_events``, later ``relay_outbox``).

* **Exit codes** with one meaning each, so a supervisor (Kubernetes, systemd) can tell a clean
  stop from a crash and restart the worker when it should.
* **Signal handling**: the first SIGTERM or SIGINT asks the loop to stop after the current message;
  a second one, or the shutdown timeout passing, exits at once.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

EXIT_OK = 0               # stopped on request, or disabled by the kill switch
EXIT_FATAL = 1            # fatal broker/client error: restart with fresh state
EXIT_CONFIG = 2           # invalid settings or options: fix the configuration
EXIT_TOO_MANY_ERRORS = 3  # EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT reached: restart
EXIT_FORCED = 4           # second signal or shutdown timeout: stopped without finishing


class ConsecutiveErrors:
    """Errors in a row of one worker; a success resets the count (``EVENT_BUS_KAFKA_WORKER_CONSECUTIVE_ERRORS_LIMIT``).

    ``limit`` None means no limit: ``failed()`` then never says the worker should stop.
    """

    def __init__(self, limit: int | None):
        self.limit = limit
        self.count = 0

    def failed(self) -> bool:
        """Count one more error; True when the limit is reached and the worker should exit (status 3)."""
        self.count += 1
        return bool(self.limit) and self.count >= int(self.limit or 0)

    def succeeded(self) -> None:
        """Something worked: start counting again from zero."""
        self.count = 0


class WorkerExit(SystemExit):
    """Ends a worker with a meaningful exit code.

    A ``SystemExit`` on purpose: openedx-events' own ``consume_events`` command catches
    ``Exception`` and would otherwise turn every failure into exit status 0.
    """

    def __init__(self, code: int, reason: str):
        self.reason = reason
        super().__init__(code)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], Any], shutdown_timeout: float) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT call ``stop()`` once; a second signal exits at once.

    After the first signal, a timer exits the process with ``EXIT_FORCED`` if the block has not
    finished within ``shutdown_timeout`` seconds. Outside the main thread nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = threading.Event()
    finished = threading.Event()

    def force_exit(reason: str) -> None:
        logger.error("Exiting at once (%s); unfinished work will be redelivered", reason)
        logging.shutdown()
        os._exit(EXIT_FORCED)

    def watchdog() -> None:
        if not finished.wait(shutdown_timeout):
            force_exit(f"shutdown took longer than {shutdown_timeout} s")

    def on_signal(signum: int, _frame: Any) -> None:
        if received.is_set():
            force_exit(f"second signal {signal.Signals(signum).name}")
        received.set()
        logger.info("Received %s: finishing the current message, then stopping", signal.Signals(signum).name)
        stop()
        threading.Thread(target=watchdog, name="shutdown-watchdog", daemon=True).start()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        finished.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
