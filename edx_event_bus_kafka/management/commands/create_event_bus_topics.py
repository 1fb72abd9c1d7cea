"""``./manage.py create_event_bus_topics``: create the event and dead-letter topics this service needs.

For brokers with topic auto-creation turned off (most managed Kafka), and for dead-letter topics,
which must exist before a consumer first fails. Safe to run on every deploy: existing topics are
reported and never changed. Exit status: 0 done (warnings included), 1 a topic could not be created
or the broker could not be reached or the settings are invalid, 2 a flag value that does not parse.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter
from typing import Any, get_args

from django.core.management.base import CommandError, CommandParser

from edx_event_bus_kafka.internal.errors import ConfigurationError, TopicAdminError
from edx_event_bus_kafka.internal.operations.topics import (
    Status,
    TopicResult,
    ensure_topics,
    planned_topics,
)
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.management.base import EventBusCommand, positive_seconds

_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000))



def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _retention_ms(text: str) -> int:
    if text == "-1":
        return -1
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds >= 1, or -1 (keep forever)")
    return int(text)


def _plural(count: int, word: str = "topic") -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _retention_text(config: dict[str, str]) -> str:
    value = config.get("retention.ms")
    if value is None:
        return "default"
    milliseconds = int(value)
    if milliseconds < 0:
        return "forever"
    for unit, size in _UNITS:
        if milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


class Command(EventBusCommand):
    needs_broker = True
    help = """
    Create the Kafka topics this service needs: the topics enabled in EVENT_BUS_PRODUCER_CONFIG and those
    named with --topic (all with EVENT_BUS_TOPIC_PREFIX), plus, for each --group, that consumer group's
    dead-letter topic on each of them. Existing topics are left as they are.

    examples:
        ./manage.py create_event_bus_topics --dry-run
        ./manage.py create_event_bus_topics --topic user-login --group user-activity --partitions 6
    """
    # Settings are checked by get_settings() below, with our own message naming each bad setting.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--group", action="append", dest="groups", default=[], metavar="G",
                            help="Also create this consumer group's dead-letter topics (repeatable)")
        parser.add_argument("--topic", action="append", dest="topics", default=[], metavar="T",
                            help="Also create this topic, named without prefix (repeatable)")
        parser.add_argument("--partitions", type=_at_least_one, metavar="N",
                            help="Partitions of new topics (default: EVENT_BUS_KAFKA_TOPIC_PARTITIONS)")
        parser.add_argument("--replication-factor", type=_at_least_one, metavar="N",
                            help="Replication factor of new topics (default: EVENT_BUS_KAFKA_TOPIC_REPLICATION_FACTOR)")
        parser.add_argument("--retention-ms", type=_retention_ms, metavar="N",
                            help="retention.ms of new event topics, -1 for forever (default: "
                                 "EVENT_BUS_KAFKA_TOPIC_RETENTION_MS); dead-letter topics keep "
                                 "EVENT_BUS_KAFKA_DEAD_LETTER_RETENTION_MS")
        parser.add_argument("--timeout", type=positive_seconds, default=10.0, metavar="SECONDS",
                            help="How long to wait for the broker per request (default: 10)")
        parser.add_argument("--dry-run", action="store_true",
                            help="Only list existing topics and show what would be created")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        overrides = {"topic_partitions": options["partitions"],
                     "topic_replication_factor": options["replication_factor"],
                     "topic_retention_ms": options["retention_ms"]}
        try:
            settings = dataclasses.replace(get_settings(),
                                           **{name: value for name, value in overrides.items() if value is not None})
            plans = planned_topics(settings, groups=options["groups"], extra_topics=options["topics"])
        except ConfigurationError as error:
            raise CommandError(str(error)) from error
        if not plans:
            raise CommandError("No topics to create: EVENT_BUS_PRODUCER_CONFIG enables none and no --topic was "
                               "given.")
        try:
            results = ensure_topics(plans, dry_run=options["dry_run"], timeout=options["timeout"], settings=settings)
        except TopicAdminError as error:
            raise CommandError(str(error)) from error
        counts: Counter[str] = Counter(result.status for result in results)
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"],
                                          "summary": {status: counts[status] for status in get_args(Status)},
                                          "topics": [result.as_dict() for result in results]}, indent=2))
        else:
            self.stdout.write(self._table(results))
            for note in dict.fromkeys(self._notes(results)):
                self.stdout.write(self.style.WARNING(note))
            self.stdout.write(self._summary(counts, options["dry_run"]))
        unknown = [result for result in results if result.status == "unknown"]
        if unknown:  # a dry run that could not learn what it was asked: a deploy gate must not pass
            reason = (unknown[0].warning or "").removeprefix("existence unknown: ")
            raise CommandError(f"{reason}; could not check {_plural(len(unknown))}")
        failed = [result for result in results if result.status == "failed"]
        if failed:
            raise CommandError(f"{_plural(len(failed))} could not be created: "
                               + "; ".join(f"{result.name!r} ({result.error})" for result in failed))

    @staticmethod
    def _table(results: list[TopicResult]) -> str:
        header = ("TOPIC", "KIND", "PARTITIONS", "REPLICATION", "RETENTION", "STATUS")
        rows = [header]
        for result in results:
            plan, found = result.plan, result.status == "exists"
            partitions = result.current_partitions if found else plan.partitions
            replication = result.current_replication_factor if found else plan.replication_factor
            rows.append((
                result.name, plan.kind,
                "?" if partitions is None else str(partitions),
                ("?" if found else "default") if replication is None else str(replication),
                "unchanged" if found else _retention_text(plan.config),
                result.status.replace("-", " ") + (" (warning)" if found and result.warning else ""),
            ))
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                         for row in rows)

    @staticmethod
    def _notes(results: list[TopicResult]) -> list[str]:
        """Warnings and errors; the reason of an unknown status is the same for every topic, so said once."""
        notes = []
        for result in results:
            if result.status == "unknown":
                notes.append(f"Dry run: {result.warning}")
            elif result.error:
                notes.append(f"Error: {result.name}: {result.error}")
            elif result.warning:
                notes.append(f"Warning: {result.name} {result.warning}")
        return notes

    @staticmethod
    def _summary(counts: Counter[str], dry_run: bool) -> str:
        failed = f"; {counts['failed']} failed" if counts["failed"] else ""
        if not dry_run:
            return f"Created {_plural(counts['created'])}; {counts['exists']} already existed{failed}."
        if counts["unknown"]:
            return f"Dry run: {_plural(counts['unknown'])} planned, whether they exist is unknown{failed}."
        return f"Dry run: would create {_plural(counts['would-create'])}; {counts['exists']} already exist{failed}."
