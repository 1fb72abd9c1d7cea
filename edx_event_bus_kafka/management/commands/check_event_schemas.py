"""``./manage.py check_event_schemas [--register] [--json] [--event-type TYPE ...]``: a deployment gate.

Compares the key and value schema of every enabled event type of ``EVENT_BUS_PRODUCER_CONFIG`` with
the latest version under its registry subject, using the registry's own compatibility check. Exit
status: 0 every subject is new, identical or compatible; 1 a subject is incompatible or could not be
checked, or no registry is configured; 2 a flag that does not parse (argparse's usage error).
"""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from edx_event_bus_kafka.internal.errors import ConfigurationError
from edx_event_bus_kafka.internal.operations import schema_check
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.internal.settings.secrets import redact_url
from edx_event_bus_kafka.management.base import EventBusCommand

MAX_DETAIL_WIDTH = 100
MAX_MESSAGE_WIDTH = 400



def _cut(text: str, width: int = MAX_DETAIL_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


class Command(EventBusCommand):
    help = """
    Check the Avro schemas of the configured event types (values and keys) against the schema
    registry, and optionally register them. Exits 1 when a schema is incompatible or a subject could
    not be checked, so it can gate a deployment.

    statuses:
        new           the subject has no versions yet (registered with --register)
        identical     the latest version is our schema
        compatible    the registry accepts our schema as a new version (registered with --register)
        incompatible  the registry would refuse our schema: producing these events would fail
        error         the subject could not be checked (registry unreachable, bad configuration...)

    examples:
        ./manage.py check_event_schemas
        ./manage.py check_event_schemas --register
        ./manage.py check_event_schemas --json --event-type org.openedx.learning.course.enrollment.changed.v1
    """
    # Settings are checked by get_settings() below, with our own message naming each bad setting.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--register", action="store_true",
                            help="Register new and compatible schemas (the producer's text, so the producer's ids)")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table")
        parser.add_argument("--event-type", action="append", dest="event_types", metavar="TYPE",
                            help="Check only this event type (repeatable)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            settings = get_settings()
            planned = schema_check.planned_subjects(event_types=options["event_types"], bus_settings=settings)
            results = schema_check.check(planned, register=options["register"])
        except ConfigurationError as error:
            raise CommandError(str(error)) from error
        counts = {status: sum(result.status == status for result in results) for status in schema_check.STATUSES}
        registered = sum(result.registered_version is not None for result in results)
        failed = counts["incompatible"] + counts["error"]
        if options["json"]:
            report = {"registry": redact_url(settings.schema_registry_url or ""), "register": options["register"],
                      "ok": not failed, "counts": counts, "registered": registered,
                      "subjects": [result.as_dict() for result in results]}
            self.stdout.write(json.dumps(report, indent=2))
        else:
            if results:
                self.stdout.write(self._table(results))
            for result in results:
                if result.messages:  # the registry's full explanation; the table shows only its start
                    self.stdout.write(f"\n{result.planned.subject} is incompatible, the registry says:")
                    self.stdout.write("\n".join(f"  - {_cut(text, MAX_MESSAGE_WIDTH)}" for text in result.messages))
            shown = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
            registry = redact_url(settings.schema_registry_url or "")
            self.stdout.write(f"{len(results)} subject(s) checked against {registry}: "
                              f"{shown or 'nothing to check'}; {registered} registered.")
        if failed:
            raise CommandError(f"Schema check failed: {counts['incompatible']} incompatible, {counts['error']} "
                               "error(s); see the details above.")

    @staticmethod
    def _table(results: list[schema_check.SubjectResult]) -> str:
        header = ("SUBJECT", "KIND", "STATUS", "LATEST", "DETAIL")
        rows = [header] + [
            (result.planned.subject or f"? ({result.planned.event_type} on {result.planned.topic})",
             result.planned.kind, result.status,
             "-" if result.latest_version is None else str(result.latest_version), _cut(result.detail))
            for result in results
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
            for row in rows
        )
