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

The insert is on the hot path of every deduplicated event, so its statement is compiled by Django's
SQL compiler once per database and then executed with each event's values, prepared by the model's
fields for that database: the same SQL as ``InboxEvent.objects.create`` (without the model's save
signals, as ``bulk_create``), for less than half its Python time.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Min
from django.utils import timezone

from edx_event_bus_kafka.internal.errors import ReceiverError
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, on_settings_changed


@dataclass(frozen=True)
class Delivery:
    """One copy of an event, as a consumer group received it."""

    group: str
    event_id: str
    topic: str
    partition: int
    offset: int


#: The inbox columns :func:`run_once` fills, in the order ``_insert`` gives their values.
_COLUMNS = ("consumer_group", "event_id", "topic", "kafka_partition", "kafka_offset", "processed_at")
_statements: dict[str, tuple[str, list[Any]]] = {}  # database alias -> (INSERT statement, its fields)
_statements_lock = threading.Lock()


@on_settings_changed
def _forget_statements() -> None:
    """Tests may point an alias at another database."""
    _statements.clear()


def _insert_statement(using: str) -> tuple[str, list[Any]]:
    """The INSERT of one inbox row as Django's compiler writes it for database ``using``, and its fields."""
    found = _statements.get(using)
    if found is None:
        from django.db.models.sql import InsertQuery

        from edx_event_bus_kafka.models import InboxEvent

        concrete = {field.name: field for field in InboxEvent._meta.concrete_fields}
        fields = [concrete[name] for name in _COLUMNS]
        query = InsertQuery(InboxEvent)
        sample = InboxEvent(consumer_group="", event_id="", topic="", kafka_partition=0, kafka_offset=0,
                            processed_at=timezone.now())
        query.insert_values(fields, [sample])
        ((sql, _params),) = query.get_compiler(using=using).as_sql()
        found = (sql, fields)
        with _statements_lock:
            _statements[using] = found
    return found


def _insert(delivery: Delivery, using: str) -> None:
    connection = connections[using]
    sql, fields = _insert_statement(using)
    values = (delivery.group, delivery.event_id, delivery.topic, delivery.partition, delivery.offset, timezone.now())
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def run_once(delivery: Delivery, receivers: Callable[[], Any], *, using: str) -> bool:
    """Call ``receivers`` and record the event for its group in one transaction on ``using``.

    Returns False, without calling ``receivers``, when the group has already processed the event.

    Raises:
        ReceiverError: what ``receivers`` raised passes through (all rolled back); also raised when a
            receiver caught a database error, which leaves the transaction unable to commit.
        DatabaseError: the database failed (all rolled back).

    """
    with transaction.atomic(using=using):
        try:
            _insert(delivery, using)
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


@dataclass(frozen=True)
class Rows:
    """Which inbox rows to delete: processed before ``before`` and/or at or after ``since``, of ``group`` or all."""

    before: datetime | None = None
    since: datetime | None = None
    group: str | None = None

    def query(self, using: str) -> Any:
        """These rows, as a queryset on ``using``."""
        from edx_event_bus_kafka.models import InboxEvent

        query = InboxEvent.objects.using(using).all()
        if self.before is not None:
            query = query.filter(processed_at__lt=self.before)
        if self.since is not None:
            query = query.filter(processed_at__gte=self.since)
        return query if self.group is None else query.filter(consumer_group=self.group)

    def describe(self) -> str:
        """For the command's output: ``of group 'g' processed before <time>`` and the like."""
        parts = [f"of group {self.group!r}" if self.group else "of every group"]
        if self.before is not None:
            parts.append(f"processed before {self.before.isoformat()}")
        if self.since is not None:
            parts.append(f"processed at or after {self.since.isoformat()}")
        return " ".join(parts)


def purge_batch(rows: Rows, *, using: str, batch_size: int) -> int:
    """Delete up to ``batch_size`` of ``rows``, oldest first, in one short transaction; how many.

    Where the database can, rows another purger has locked are skipped rather than waited for, so
    workers purging at the same time neither wait for nor deadlock each other.
    """
    from edx_event_bus_kafka.models import InboxEvent

    skip_locked = connections[using].features.has_select_for_update_skip_locked
    with transaction.atomic(using=using):
        chosen = rows.query(using).select_for_update(skip_locked=skip_locked)
        ids = list(chosen.order_by("processed_at").values_list("id", flat=True)[:batch_size])
        if ids:
            InboxEvent.objects.using(using).filter(id__in=ids).delete()
    return len(ids)


def purge(rows: Rows, *, using: str, batch_size: int) -> Iterator[int]:
    """Delete all of ``rows``, one batch per transaction; yields each batch's count.

    A database error ends it where it is: the batches yielded so far are deleted.
    """
    while True:
        deleted = purge_batch(rows, using=using, batch_size=batch_size)
        yield deleted
        if deleted < batch_size:
            return


def count(rows: Rows, *, using: str) -> int:
    """How many of ``rows`` there are now (what :func:`purge` would delete)."""
    return int(rows.query(using).count())


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
