"""Retention of the inbox: rows older than ``EVENT_BUS_KAFKA_INBOX_RETENTION_SEC`` are deleted.

A deduplicating worker calls :meth:`InboxPurger.between_batches` after each batch of messages. At
most every ``EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC`` it deletes one batch of expired rows in one
short transaction; while it keeps finding full batches (a backlog, for instance after purging was
off) it deletes one more batch after every batch of messages until it catches up. So purging never
runs inside a message's processing and never takes more than one small batch at a time. A failure
is logged and tried again at the next interval: purging is a side concern and never stops the worker.
``./manage.py purge_event_bus_inbox`` deletes them all at once, in the same batches.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.utils import timezone

from edx_event_bus_kafka.internal.inbox import store
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings

logger = logging.getLogger(__name__)


def retention_cutoff(retention_sec: float, now: datetime | None = None) -> datetime:
    """Rows processed before this time are expired."""
    return (now or timezone.now()) - timedelta(seconds=retention_sec)


class InboxPurger:
    """Deletes expired inbox rows in small batches, when due; keeps count of the rows and time it took."""

    def __init__(self, settings: EventBusSettings, *, clock: Callable[[], float] = time.monotonic):
        self.interval = settings.inbox_purge_interval_sec
        self.retention_sec = settings.inbox_retention_sec
        self.batch_size = settings.inbox_purge_batch_size
        self.database = settings.transaction_database
        self._clock = clock
        self._next_due = clock()  # the first batch goes right after the first batch of messages
        self.purged = 0
        self.batches = 0
        self.seconds = 0.0  # spent purging, for the benchmark and the worker's closing log line

    @property
    def enabled(self) -> bool:
        """Whether this worker purges at all (``EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC`` is not None)."""
        return self.interval is not None

    def between_batches(self) -> int:
        """Delete one batch of expired rows if one is due; how many were deleted (never raises DatabaseError)."""
        if self.interval is None or self._clock() < self._next_due:
            return 0
        started = self._clock()
        try:
            deleted = store.purge_batch(store.Rows(before=retention_cutoff(self.retention_sec)),
                                        using=self.database, batch_size=self.batch_size)
        except DatabaseError as error:
            logger.warning("Could not purge expired inbox rows (will try again in %.0f s): %s", self.interval, error)
            deleted = 0
        finished = self._clock()
        self.seconds += finished - started
        self.batches += 1
        self.purged += deleted
        # A full batch means more are waiting: take the next one after the next batch of messages.
        self._next_due = finished if deleted >= self.batch_size else finished + self.interval
        if deleted:
            logger.debug("Purged %d expired inbox rows in %.1f ms", deleted, (finished - started) * 1000)
        return deleted
