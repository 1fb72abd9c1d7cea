"""Collapsing repeated log lines, so an outage reads as a line, not a flood.

librdkafka logs each failed reconnect (several lines per attempt, several attempts a second). The
:class:`RepeatFilter` on its logger lets a line through once, drops identical ones (numbers such as
timings and client instance counters ignored) for a period, and then lets it through again with
the count of what was dropped.
"""
from __future__ import annotations

import logging
import re
import threading
import time

#: How long identical lines are held back after one got through.
REPEAT_PERIOD_SEC = 60.0

_NUMBERS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Lets a message through at most once per ``period`` seconds, counting the repeats it drops."""

    def __init__(self, period: float = REPEAT_PERIOD_SEC):
        super().__init__()
        self.period = period
        self._seen: dict[tuple[int, str], tuple[float, int]] = {}  # key -> (last shown, dropped since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to emit ``record``; a repeat let through after the period says how many were dropped."""
        shown, dropped = self.admit(record.levelno, record.getMessage())
        if shown and dropped:
            record.msg = f"{record.getMessage()}{self.dropped_note(dropped)}"
            record.args = None
        return shown

    def admit(self, level: int, message: str) -> tuple[bool, int]:
        """(whether ``message`` may be shown now, how many like it were held back since it last was)."""
        key = (level, _NUMBERS.sub("#", message))
        now = time.monotonic()
        with self._lock:
            shown_at, dropped = self._seen.get(key, (None, 0))
            if shown_at is not None and now - shown_at < self.period:
                self._seen[key] = (shown_at, dropped + 1)
                return False, dropped + 1
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # forget the oldest lines rather than grow without bound
                for stale in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[stale]
        return True, dropped

    def dropped_note(self, dropped: int) -> str:
        """The suffix that says how many repeats were held back."""
        return f" (and {dropped} more like it in the last {self.period:.0f} s)"


#: Our own warnings about errors librdkafka recovers from by itself (one per failed reconnect).
_TRANSIENT = RepeatFilter()


def log_collapsed(logger: logging.Logger, level: int, message: str) -> None:
    """Log ``message`` unless an identical one was logged in the last minute (then it is only counted)."""
    shown, dropped = _TRANSIENT.admit(level, f"{logger.name}: {message}")
    if shown:
        logger.log(level, "%s%s", message, _TRANSIENT.dropped_note(dropped) if dropped else "")
