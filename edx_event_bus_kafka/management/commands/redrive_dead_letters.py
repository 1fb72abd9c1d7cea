"""``./manage.py redrive_dead_letters -t TOPIC -g GROUP``: list a group's dead letters, re-publish chosen ones.

Listing reads the group's dead-letter topic without joining any group. Re-published copies go to the
original topic marked for this group only, so other groups do not process the event twice. Redrive
needs a selector or ``--all``, so nobody re-publishes everything by accident. Exit status: 0 done,
1 error (conflicting flags, bad settings, broker unreachable, copies not acknowledged), 2 a flag value
that does not parse (argparse's usage error).
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser

from edx_event_bus_kafka.internal.dead_letters import letters, redrive
from edx_event_bus_kafka.internal.dead_letters.writer import dead_letter_topic
from edx_event_bus_kafka.internal.errors import ConfigurationError, RedriveError, TopicReadError
from edx_event_bus_kafka.internal.settings.clients import get_full_topic
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.management.base import EventBusCommand

MAX_ERROR_WIDTH = 80



def _partition(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a partition number (a whole number >= 0)")
    return int(text)


def _offset_range(text: str) -> tuple[int, int | None]:
    start, dash, end = text.partition("-")
    if not dash or not start.isdigit() or not (end.isdigit() or end == ""):
        raise argparse.ArgumentTypeError(f"{text!r} is not an offset range; use A-B or A- (e.g. 10-20 or 10-)")
    if end and int(end) < int(start):
        raise argparse.ArgumentTypeError(f"{text!r} ends before it starts")
    return int(start), int(end) if end else None


def _plural(count: int) -> str:
    return f"{count} dead letter{'' if count == 1 else 's'}"


def _when(text: str | None) -> str:
    try:
        return datetime.fromisoformat(text or "").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text or ""


def _cut(text: str | None) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= MAX_ERROR_WIDTH else flat[: MAX_ERROR_WIDTH - 3] + "..."


def _summary(letter: letters.DeadLetter) -> dict[str, Any]:
    """Everything but the key and value, which may hold personal data."""
    names = ("event_id", "event_type", "original_topic", "original_partition", "original_offset", "group",
             "error_class", "error_message", "attempts", "time")
    return {"dead_letter_partition": letter.partition, "dead_letter_offset": letter.offset,
            **{name: getattr(letter, name) for name in names}}


def _place(partition: int | None, offset: int | None) -> str:
    return f"{'?' if partition is None else partition}:{'?' if offset is None else offset}"


class Command(EventBusCommand):
    help = """
    List a consumer group's dead letters, and re-publish chosen ones to the original topic so that
    only this group processes them again. Selectors (combined with AND) refer to the original message.

    examples:
        ./manage.py redrive_dead_letters -t user-login -g user-activity --list
        ./manage.py redrive_dead_letters -t user-login -g user-activity --event-id 0b1c... --dry-run
        ./manage.py redrive_dead_letters -t user-login -g user-activity --partition 2 --offsets 100-
        ./manage.py redrive_dead_letters -t user-login -g user-activity --all
    """
    # Settings are checked by get_settings() below, with our own message naming each bad setting.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-t", "--topic", required=True, help="Topic the group consumes (without prefix)")
        parser.add_argument("-g", "--group_id", "--group-id", required=True, help="Consumer group id")
        parser.add_argument("--list", action="store_true", dest="list_only",
                            help="Only list the (selected) dead letters; re-publish nothing")
        parser.add_argument("--event-id", action="append", dest="event_ids", metavar="ID",
                            help="Select the dead letter of this event (repeatable)")
        parser.add_argument("--partition", type=_partition, metavar="N", help="Select by original partition")
        parser.add_argument("--offsets", type=_offset_range, metavar="A-B",
                            help="Select by original offset, inclusive: A-B, or A- for A and later")
        parser.add_argument("--all", action="store_true", dest="all_letters",
                            help="Re-publish every dead letter of the group (required when no selector is given)")
        parser.add_argument("--dry-run", action="store_true", help="Show what would be re-published; send nothing")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        topic, group = options["topic"], options["group_id"]
        selectors = {"event_ids": options["event_ids"], "partition": options["partition"],
                     "offset_range": options["offsets"]}
        selecting = any(value is not None for value in selectors.values())
        redriving = not options["list_only"]
        if redriving and not selecting and not options["all_letters"]:
            raise CommandError(
                "Refusing to re-publish every dead letter without --all. Choose dead letters with --event-id, "
                "--partition or --offsets, pass --all to re-publish all of them, or use --list to only list them."
            )
        if options["all_letters"] and selecting:
            raise CommandError("--all re-publishes every dead letter; it cannot be combined with selectors")
        try:
            settings = get_settings()
        except ConfigurationError as error:
            raise CommandError(str(error)) from error
        if not settings.bootstrap_servers:
            raise CommandError("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set: there is no broker to read from")
        full_topic = get_full_topic(topic, settings)
        letters_topic = dead_letter_topic(full_topic, group, settings)
        try:
            found = letters.read_dead_letters(topic, group, settings)
        except TopicReadError as error:
            raise CommandError(str(error)) from error
        chosen = letters.select(found, **selectors)
        report: dict[str, Any] = {"topic": full_topic, "group": group, "dead_letter_topic": letters_topic,
                                  "found": len(found)}
        if not redriving:
            self._show(chosen, {**report, "action": "list"}, options["json"],
                       f"{_plural(len(chosen))} of group {group} in {letters_topic}"
                       + (f" ({len(found)} in all)" if selecting else ""))
            return
        missing = sorted(set(options["event_ids"] or ()) - {letter.event_id for letter in chosen})
        if missing:
            narrowed = options["partition"] is not None or options["offsets"] is not None
            raise CommandError(f"No dead letter of group {group} matches event id(s) {', '.join(missing)}"
                               f"{' with the other selectors' if narrowed else ''}; nothing re-published "
                               "(see --list)")
        copies = letters.latest_per_event(chosen)
        try:
            count = redrive.redrive(copies, group, dry_run=options["dry_run"], settings=settings)
        except RedriveError as error:
            raise CommandError(str(error)) from error
        verb = "Dry run: would re-publish" if options["dry_run"] else "Re-published"
        skipped = len(chosen) - len(copies)
        summary = f"{verb} {_plural(count)} to {full_topic} for group {group}"
        if skipped:
            summary += f" ({skipped} older dead letter(s) of the same events skipped)"
        action = "dry_run" if options["dry_run"] else "redrive"
        self._show(copies, {**report, "action": action, "republished": count, "skipped_duplicates": skipped},
                   options["json"], summary)

    def _show(self, letters: list[letters.DeadLetter], report: dict[str, Any], as_json: bool, summary: str) -> None:
        if as_json:
            self.stdout.write(json.dumps({**report, "dead_letters": [_summary(letter) for letter in letters]},
                                         indent=2))
            return
        if letters:
            self.stdout.write(self._table(letters))
        self.stdout.write(summary)

    @staticmethod
    def _table(letters: list[letters.DeadLetter]) -> str:
        header = ("DEAD LETTER", "ORIGINAL", "EVENT ID", "EVENT TYPE", "ERROR CLASS", "ATTEMPTS", "TIME (UTC)", "ERROR")
        rows = [header] + [
            (f"{letter.partition}:{letter.offset}", _place(letter.original_partition, letter.original_offset),
             letter.event_id or "?", letter.event_type or "?", letter.error_class or "?",
             str(letter.attempts or "?"), _when(letter.time), _cut(letter.error_message))
            for letter in letters
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
            for row in rows
        )
