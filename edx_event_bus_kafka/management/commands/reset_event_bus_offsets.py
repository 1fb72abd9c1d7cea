"""``./manage.py reset_event_bus_offsets -t TOPIC -g GROUP --to-...``: move a group's committed offsets.

Replay (or skip) in one step, as ``kafka-consumer-groups --reset-offsets`` does it: a dry run that
prints the plan unless ``--execute`` is given, and ``--execute`` refuses while the group has active
members. Exit status: 0 planned or done, 1 could not do it (broker unreachable or refusing us,
unknown topic or partition, active members, invalid settings), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser

from edx_event_bus_kafka.internal.errors import (
    BrokerRefusedError,
    ConfigurationError,
    OffsetResetError,
    UnknownTopicError,
)
from edx_event_bus_kafka.internal.kafka.seeking import parse_offset_time
from edx_event_bus_kafka.internal.operations.offset_reset import (
    TIMEOUT_SEC,
    ResetPlan,
    ResetTarget,
    execute_reset,
    plan_reset,
)
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.management.base import EventBusCommand, positive_seconds


def _when(text: str) -> datetime:
    try:
        parsed = parse_offset_time(text)
    except ConfigurationError:
        parsed = None
    if parsed is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date-time with a timezone, e.g. 2026-11-28T09:00:00Z or "
            "2026-11-28T10:00:00+01:00")
    return parsed


def _whole(text: str, *, minimum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or (minimum is not None and value < minimum):
        floor = "" if minimum is None else f" >= {minimum}"
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number{floor}")
    return value


def _not_negative(text: str) -> int:
    return _whole(text, minimum=0)


def _target(options: dict[str, Any]) -> ResetTarget:
    if options["to_datetime"] is not None:
        return ResetTarget("datetime", when=options["to_datetime"])
    if options["to_earliest"]:
        return ResetTarget("earliest")
    if options["to_latest"]:
        return ResetTarget("latest")
    if options["shift_by"] is not None:
        return ResetTarget("shift", number=options["shift_by"])
    return ResetTarget("offset", number=options["to_offset"])


class Command(EventBusCommand):
    help = """
    Move a consumer group's committed offsets on one topic, for every partition or those named with
    --partition. Without --execute this is a dry run: it prints the plan (partition, committed offset
    now, new offset, end, lag after) and changes nothing. --execute refuses while the group has active
    members: stop its workers first, then start them again (without --offset-time) afterwards.

    examples:
        ./manage.py reset_event_bus_offsets -t user-login -g user-activity --to-datetime 2026-11-28T09:00:00Z
        ./manage.py reset_event_bus_offsets -t user-login -g user-activity --to-datetime 2026-11-28T09:00:00Z --execute
        ./manage.py reset_event_bus_offsets -t user-login -g user-activity --shift-by -100 --partition 2 --execute
        ./manage.py reset_event_bus_offsets -t user-login -g user-activity --to-latest --json
    """
    # Settings are checked by get_settings() below, with our own message naming each bad setting.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-t", "--topic", required=True, help="Topic (without prefix)")
        parser.add_argument("-g", "--group_id", "--group-id", required=True, help="Consumer group id")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--to-datetime", type=_when, metavar="TIME",
                            help="The first message at or after this ISO 8601 time (timezone required)")
        target.add_argument("--to-earliest", action="store_true", help="The oldest message the topic still holds")
        target.add_argument("--to-latest", action="store_true", help="The end: skip everything not consumed yet")
        target.add_argument("--shift-by", type=_whole, metavar="N",
                            help="The committed offset plus N (negative: back, to consume again)")
        target.add_argument("--to-offset", type=_not_negative, metavar="N", help="Offset N on each chosen partition")
        parser.add_argument("--partition", type=_not_negative, action="append", dest="partitions", metavar="P",
                            help="Only this partition (repeatable; default: all)")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--dry-run", action="store_true", help="Only print the plan (the default)")
        mode.add_argument("--execute", action="store_true", help="Move the offsets (the group must have no members)")
        parser.add_argument("--timeout", type=positive_seconds, default=TIMEOUT_SEC, metavar="SECONDS",
                            help=f"How long to wait for each answer from the broker (default: {TIMEOUT_SEC:g})")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        target = _target(options)
        timeout = options["timeout"]
        try:
            settings = get_settings()
            plan = plan_reset(options["topic"], options["group_id"], target, partitions=options["partitions"],
                              settings=settings, timeout=timeout)
            if options["execute"]:
                execute_reset(plan, settings=settings, timeout=timeout)
        except (ConfigurationError, BrokerRefusedError, OffsetResetError, UnknownTopicError) as error:
            raise CommandError(str(error.args[0] if isinstance(error, UnknownTopicError) else error)) from error
        if options["json"]:
            self.stdout.write(json.dumps(plan.as_dict(), indent=2))
        else:
            self._show(plan)

    def _show(self, plan: ResetPlan) -> None:
        self.stdout.write(f"Topic {plan.topic}, group {plan.group}: to {plan.target.describe()}")
        header = ("PARTITION", "CURRENT", "NEW", "END", "LAG AFTER", "NOTE")
        rows = [header] + [
            (str(p.partition), "-" if p.current is None else str(p.current), str(p.new), str(p.end), str(p.lag_after),
             p.note or "")
            for p in plan.partitions
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
        for row in rows:
            self.stdout.write(("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=False))
                               + "  " + row[-1]).rstrip())
        self.stdout.write(f"Total lag after: {plan.total_lag_after}")
        if plan.executed:
            count = len(plan.partitions)
            self.stdout.write(f"Moved group {plan.group} on {count} partition{'' if count == 1 else 's'}.")
            return
        if plan.active:
            self.stdout.write(self.style.WARNING(f"Warning: {plan.refusal()}; --execute refuses until then."))
        self.stdout.write("Dry run: nothing changed; add --execute to move the group.")
