"""``./manage.py event_bus_status -t TOPIC -g GROUP``: a consumer group's backlog.

Lag, oldest unconsumed message, dead letters, outbox backlog and the group's inbox, as a table or ``--json``.
"""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from edx_event_bus_kafka.internal.errors import BrokerRefusedError, ConfigurationError, UnknownTopicError
from edx_event_bus_kafka.internal.operations.status import TIMEOUT_SEC, topic_status
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.management.base import EventBusCommand, positive_seconds


class Command(EventBusCommand):
    needs_broker = True
    help = "Show a consumer group's lag per partition, its dead letters, the outbox backlog and the group's inbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-t", "--topic", required=True, help="Topic (without prefix)")
        parser.add_argument("-g", "--group_id", "--group-id", required=True, help="Consumer group id")
        parser.add_argument("--json", action="store_true", help="Machine-readable output")
        parser.add_argument("--no-outbox", action="store_true",
                            help="Skip the outbox backlog and the inbox (no database access)")
        parser.add_argument("--timeout", type=positive_seconds, default=TIMEOUT_SEC,
                            help=f"Seconds to wait for each broker answer (default {TIMEOUT_SEC:g})")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            status = topic_status(options["topic"], options["group_id"], get_settings(),
                                  include_outbox=not options["no_outbox"], timeout=options["timeout"])
        except (ConfigurationError, BrokerRefusedError) as error:
            raise CommandError(str(error)) from error
        except UnknownTopicError as error:
            raise CommandError(str(error.args[0])) from error
        if options["json"]:
            self.stdout.write(json.dumps(status.as_dict(), indent=2))
            return
        self.stdout.write(f"Topic {status.topic}, group {status.group}")
        self.stdout.write(f"{'PARTITION':>9}  {'COMMITTED':>10}  {'END':>10}  {'LAG':>8}  OLDEST UNCONSUMED (UTC)")
        for p in status.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            oldest = p.oldest_unconsumed or "-"
            self.stdout.write(f"{p.partition:>9}  {committed:>10}  {p.end:>10}  {p.lag:>8}  {oldest}")
        self.stdout.write(f"Total lag: {status.total_lag}")
        dead = "no dead-letter topic yet" if status.dead_letters is None else f"{status.dead_letters} messages"
        self.stdout.write(f"Dead letters ({status.dead_letter_topic}): {dead}")
        if status.outbox is not None:
            age = status.outbox["oldest_pending_age_sec"]
            self.stdout.write(
                f"Outbox: {status.outbox['pending']} pending"
                + (f", oldest {age:.1f} s old" if age is not None else "")
                + f", {status.outbox['failed']} failed (moved aside)"
            )
        elif status.outbox_error:
            self.stdout.write(f"Outbox: {status.outbox_error}")
        if status.inbox is not None:
            inbox, age = status.inbox, status.inbox["oldest_age_sec"]
            self.stdout.write(
                f"Inbox (deduplication {inbox['deduplication']}): {inbox['group_rows']} events remembered for this "
                f"group" + (f", oldest processed {age:.1f} s ago" if age is not None else "")
                + f"; {inbox['table_rows']} rows in the table; retention {inbox['retention_sec']:.0f} s"
            )
        elif status.inbox_error:
            self.stdout.write(f"Inbox: {status.inbox_error}")
