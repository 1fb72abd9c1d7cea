"""The inbox table: run an event's receivers at most once per consumer group, in one transaction.

:func:`run_once` opens a transaction, inserts ``(group, event id)`` as its first statement, runs the
receivers and commits both together. The unique constraint on the pair decides:

* An id already committed makes the insert fail: the transaction, which holds nothing else yet,
  is rolled back and the receivers do not run (a duplicate).
* An id another transaction has inserted but not yet committed (another worker, or another thread
  with its own connection, processing a copy right now) makes the insert wait, on PostgreSQL and
  MySQL, until that transaction ends: it then fails if the other committed, and succeeds if the
  other rolled back. SQLite lets one writer in at a time, so the same holds there.
* A receiver error rolls back the receivers' writes and the insert together, so a retry or a later
  copy runs them again.

Only writes to that one database are covered; e-mails, HTTP calls and other databases are not.
Everything here takes the database alias and uses the calling thread's own connection (Django's
connections are per thread), so threads may call it concurrently.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Min
from django.utils import timezone

from edx_event_bus_kafka.internal.errors import ReceiverError
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings


@dataclass(frozen=True)
class Delivery:
    """One copy of an event, as a consumer group received it."""

    group: str
    event_id: str
    topic: str
    partition: int
    offset: int


def run_once(delivery: Delivery, receivers: Callable[[], Any], *, using: str) -> bool:
    """Call ``receivers`` and record the event for its group in one transaction on ``using``.

    Returns False, without calling ``receivers``, when the group has already processed the event.

    Raises:
        ReceiverError: what ``receivers`` raised passes through (all rolled back); also raised when a
            receiver caught a database error, which leaves the transaction unable to commit.
        DatabaseError: the database failed (all rolled back).

    """
    from edx_event_bus_kafka.models import InboxEvent

    with transaction.atomic(using=using):
        try:
            InboxEvent.objects.using(using).create(
                consumer_group=delivery.group, event_id=delivery.event_id, topic=delivery.topic,
                kafka_partition=delivery.partition, kafka_offset=delivery.offset, processed_at=timezone.now(),
            )
        except IntegrityError:
            # The insert is the transaction's first statement, so rolling it all back loses nothing
            # (no savepoint needed); leaving the block without an exception rolls back.
            transaction.set_rollback(True, using=using)
            return False
        receivers()
        if transaction.get_rollback(using=using):
            # Django would roll back quietly at the end of the block: say so instead, and retry.
            raise ReceiverError(
                f"a receiver caught a database error of event {delivery.event_id} without wrapping the failing "
                "statement in its own transaction.atomic(); the receivers' transaction can only be rolled back",
                [], topic=delivery.topic, partition=delivery.partition, offset=delivery.offset,
                event_id=delivery.event_id,
            )
    return True


def purge_batch(cutoff: datetime, *, using: str, batch_size: int, group: str | None = None) -> int:
    """Delete up to ``batch_size`` rows processed before ``cutoff`` (of ``group`` only, if given); how many.

    The rows are chosen and deleted in one short transaction, oldest first. Where the database can,
    rows another purger has locked are skipped rather than waited for, so workers purging at the
    same time neither wait for nor deadlock each other.
    """
    from edx_event_bus_kafka.models import InboxEvent

    manager = InboxEvent.objects.using(using)
    skip_locked = connections[using].features.has_select_for_update_skip_locked
    with transaction.atomic(using=using):
        chosen = _expired(manager, cutoff, group).select_for_update(skip_locked=skip_locked)
        ids = list(chosen.order_by("processed_at").values_list("id", flat=True)[:batch_size])
        if ids:
            manager.filter(id__in=ids).delete()
    return len(ids)


def purge(cutoff: datetime, *, using: str, batch_size: int, group: str | None = None) -> Iterator[int]:
    """Delete every row processed before ``cutoff``, one batch per transaction; yields each batch's count.

    A database error ends it where it is: the batches yielded so far are deleted.
    """
    while True:
        deleted = purge_batch(cutoff, using=using, batch_size=batch_size, group=group)
        yield deleted
        if deleted < batch_size:
            return


def expired_count(cutoff: datetime, *, using: str, group: str | None = None) -> int:
    """How many rows :func:`purge` would delete now."""
    from edx_event_bus_kafka.models import InboxEvent

    return int(_expired(InboxEvent.objects.using(using), cutoff, group).count())


def _expired(manager: Any, cutoff: datetime, group: str | None) -> Any:
    query = manager.filter(processed_at__lt=cutoff)
    return query if group is None else query.filter(consumer_group=group)


@dataclass
class InboxStats:
    """The inbox as one group sees it."""

    group_rows: int
    table_rows: int
    oldest: datetime | None  # when the group's oldest remembered event was processed

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready, with the oldest row's age in seconds."""
        now = now or timezone.now()
        return {
            "group_rows": self.group_rows,
            "table_rows": self.table_rows,
            "oldest_processed_at": self.oldest.isoformat() if self.oldest else None,
            "oldest_age_sec": (now - self.oldest).total_seconds() if self.oldest else None,
        }


def stats(group: str, *, using: str) -> InboxStats:
    """Rows of ``group``, rows of the whole table, and when the group's oldest row was written."""
    from edx_event_bus_kafka.models import InboxEvent

    manager = InboxEvent.objects.using(using)
    mine = manager.filter(consumer_group=group)
    return InboxStats(group_rows=mine.count(), table_rows=manager.count(),
                      oldest=mine.aggregate(oldest=Min("processed_at"))["oldest"])


def inbox_status(group: str, settings: EventBusSettings) -> dict[str, Any]:
    """What ``event_bus_status`` shows of the inbox for ``group``: whether it deduplicates, rows, oldest row."""
    return {
        "deduplication": settings.consumer_deduplication.describe(group),
        "retention_sec": settings.inbox_retention_sec,
        **stats(group, using=settings.transaction_database).as_dict(),
    }
