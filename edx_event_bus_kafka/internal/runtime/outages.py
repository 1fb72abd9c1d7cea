"""One outage, reported as one story: when it began, a reminder now and then, and when it ended.

A worker backing off through a long database or broker outage would otherwise log the same error at
every attempt. Operators need the first error (with its context), a sign of life while it lasts and
the moment it is over, with how long it took.
"""
from __future__ import annotations

import logging
import time

REMINDER_EVERY_SEC = 60.0


class OutageLog:
    """Logs the start of an outage once, a reminder at most every ``reminder_every`` s, and its end."""

    def __init__(self, logger: logging.Logger, what: str, *, reminder_every: float = REMINDER_EVERY_SEC):
        self.logger = logger
        self.what = what
        self.reminder_every = reminder_every
        self.began: float | None = None
        self._last_report = 0.0
        self.failures = 0

    def failed(self, error: BaseException, retry_in: float) -> None:
        """Another failed attempt; logged only when the outage begins and then as a periodic reminder."""
        now = time.monotonic()
        self.failures += 1
        if self.began is None:
            self.began, self._last_report = now, now
            self.logger.warning("%s unavailable (%s: %s); retrying in %.1f s, reminders every %.0f s",
                                self.what, type(error).__name__, _one_line(error), retry_in, self.reminder_every)
        elif now - self._last_report >= self.reminder_every:
            self._last_report = now
            self.logger.warning("%s still unavailable after %.0f s and %d attempts (%s: %s)", self.what,
                                now - self.began, self.failures, type(error).__name__, _one_line(error))

    def recovered(self) -> None:
        """An attempt succeeded: log the end of an ongoing outage."""
        if self.began is None:
            return
        self.logger.warning("%s available again after %.1f s and %d failed attempts", self.what,
                            time.monotonic() - self.began, self.failures)
        self.began, self.failures = None, 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
