"""``./manage.py purge_event_bus_inbox``: delete inbox rows older than the retention.

Exit status: 0 done (also when nothing was old enough), 1 the database failed or has no inbox table
(nothing more was deleted; run it again), 2 bad arguments.
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError

from edx_event_bus_kafka.internal.errors import ConfigurationError
from edx_event_bus_kafka.internal.inbox import store
from edx_event_bus_kafka.internal.inbox.purging import retention_cutoff
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.management.base import EventBusCommand


def _seconds(value: str) -> float:
    import argparse

    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return seconds


class Command(EventBusCommand):
    help = """
    Delete inbox rows (events consumer groups have processed, kept for deduplication) processed
    longer ago than EVENT_BUS_KAFKA_INBOX_RETENTION_SEC, in batches of EVENT_BUS_KAFKA_INBOX_PURGE_BATCH_SIZE.

    examples:
        ./manage.py purge_event_bus_inbox --dry-run
        ./manage.py purge_event_bus_inbox
        ./manage.py purge_event_bus_inbox --group notes --older-than 0   # forget everything group notes processed
    """

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=_seconds, metavar="SECONDS",
                            help="Delete rows processed more than this many seconds ago "
                                 "(default: EVENT_BUS_KAFKA_INBOX_RETENTION_SEC)")
        parser.add_argument("-g", "--group", "--group-id", dest="group", help="Only rows of this consumer group")
        parser.add_argument("--dry-run", action="store_true", help="Count the rows that would be deleted; delete none")
        parser.add_argument("--batch-size", type=int, help="Rows per transaction "
                                                           "(default: EVENT_BUS_KAFKA_INBOX_PURGE_BATCH_SIZE)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            settings = get_settings()
        except ConfigurationError as error:
            raise CommandError(str(error)) from error
        older_than = settings.inbox_retention_sec if options["older_than"] is None else options["older_than"]
        batch_size = options["batch_size"] or settings.inbox_purge_batch_size
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        cutoff = retention_cutoff(older_than)
        group = options["group"]
        whose = f"of group {group!r}" if group else "of every group"
        database = settings.transaction_database
        deleted = 0
        try:
            if options["dry_run"]:
                count = store.expired_count(cutoff, using=database, group=group)
                self.stdout.write(f"Dry run: would delete {count} inbox rows {whose} processed before "
                                  f"{cutoff.isoformat()} (database {database!r})")
                return
            for batch in store.purge(cutoff, using=database, batch_size=batch_size, group=group):
                deleted += batch
        except DatabaseError as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CommandError(f"Could not purge the inbox in database {database!r} after deleting {deleted} "
                               f"rows (has ./manage.py migrate edx_event_bus_kafka run?): {first_line}") from error
        self.stdout.write(f"Deleted {deleted} inbox rows {whose} processed before {cutoff.isoformat()} "
                          f"(database {database!r})")
