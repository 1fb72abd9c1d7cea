"""``./manage.py purge_event_bus_inbox``: delete inbox rows older than the retention, or chosen ones.

Exit status: 0 done (also when nothing matched), 1 the database failed or has no inbox table (the
output says how many rows were deleted before; run it again), 2 bad arguments.
"""
from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from edx_event_bus_kafka.internal.errors import ConfigurationError
from edx_event_bus_kafka.internal.inbox import store
from edx_event_bus_kafka.internal.inbox.purging import retention_cutoff
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.management.base import EventBusCommand


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return seconds


def _aware_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 date and time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no timezone (add Z or +HH:MM)")
    return moment


class Command(EventBusCommand):
    help = """
    Delete inbox rows: the events consumer groups have processed, kept for deduplication. By default,
    those processed longer ago than EVENT_BUS_KAFKA_INBOX_RETENTION_SEC (what the workers purge too).
    Rows go in batches of EVENT_BUS_KAFKA_INBOX_PURGE_BATCH_SIZE, one transaction each.

    examples:
        ./manage.py purge_event_bus_inbox --dry-run
        ./manage.py purge_event_bus_inbox
        # before replaying from a time: forget what the group processed since then, so it runs again
        ./manage.py purge_event_bus_inbox --group user-activity --since 2026-11-28T09:00:00Z
    """

    def add_arguments(self, parser: CommandParser) -> None:
        chosen = parser.add_mutually_exclusive_group()
        chosen.add_argument("--older-than", type=_seconds, metavar="SECONDS",
                            help="Rows processed more than this many seconds ago "
                                 "(default: EVENT_BUS_KAFKA_INBOX_RETENTION_SEC)")
        chosen.add_argument("--since", type=_aware_time, metavar="TIME",
                            help="Rows processed at or after this ISO 8601 time (timezone required), whatever "
                                 "their age: their events will be processed again if they come again")
        parser.add_argument("-g", "--group", "--group-id", dest="group", help="Only rows of this consumer group")
        parser.add_argument("--dry-run", action="store_true", help="Count the rows; delete none")
        parser.add_argument("--batch-size", type=int,
                            help="Rows per transaction (default: EVENT_BUS_KAFKA_INBOX_PURGE_BATCH_SIZE)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            settings = get_settings()
        except ConfigurationError as error:
            raise CommandError(str(error)) from error
        batch_size = options["batch_size"] or settings.inbox_purge_batch_size
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["since"] is not None:
            rows = store.Rows(since=options["since"], group=options["group"])
        else:
            older_than = settings.inbox_retention_sec if options["older_than"] is None else options["older_than"]
            rows = store.Rows(before=retention_cutoff(older_than), group=options["group"])
        database = settings.transaction_database
        deleted = 0
        try:
            if options["dry_run"]:
                found = store.count(rows, using=database)
                self.stdout.write(f"Dry run: would delete {found} inbox rows {rows.describe()} (database {database!r})")
                return
            for batch in store.purge(rows, using=database, batch_size=batch_size):
                deleted += batch
        except DatabaseError as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CommandError(f"Could not purge the inbox in database {database!r} after deleting {deleted} "
                               f"rows (has ./manage.py migrate edx_event_bus_kafka run?): {first_line}") from error
        self.stdout.write(f"Deleted {deleted} inbox rows {rows.describe()} (database {database!r})")
