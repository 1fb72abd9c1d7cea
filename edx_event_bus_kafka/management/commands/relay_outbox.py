"""``./manage.py relay_outbox``: publish transactional-outbox rows to Kafka until stopped.

Same signal handling and exit codes as ``consume_events``: 0 stopped cleanly, 2 invalid
configuration, 3 too many consecutive errors, 4 forced stop. ``--status`` prints the backlog and exits.
"""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser
from openedx_events.tooling import load_all_signals

from edx_event_bus_kafka.internal.errors import ConfigurationError
from edx_event_bus_kafka.internal.outbox.publisher import backlog
from edx_event_bus_kafka.internal.outbox.relay import OutboxRelay
from edx_event_bus_kafka.internal.runtime.worker import EXIT_CONFIG, EXIT_OK, WorkerExit, stop_on_signals
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.management.base import EventBusCommand


class Command(EventBusCommand):
    help = "Publish pending transactional-outbox rows to Kafka, in order, until stopped (SIGTERM/SIGINT)."
    requires_system_checks = ()  # invalid settings exit with status 2 instead

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--status", action="store_true", help="Print the outbox backlog as JSON and exit")
        parser.add_argument("--heartbeat-file", help="File kept fresh while making progress (see event_bus_health)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            settings = get_settings()
        except ConfigurationError as error:
            self.stderr.write(str(error))
            raise WorkerExit(EXIT_CONFIG, "invalid configuration") from error
        if options["status"]:
            self.stdout.write(json.dumps(backlog(settings)))
            return
        if not settings.bootstrap_servers:
            self.stderr.write("Outbox relay cannot start: EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set (no broker to "
                              "publish to)")
            raise WorkerExit(EXIT_CONFIG, "invalid configuration")
        load_all_signals()
        relay = OutboxRelay(settings, heartbeat_file=options.get("heartbeat_file"))
        with stop_on_signals(relay.stop, settings.worker_shutdown_timeout_sec):
            code = relay.run()
        if code != EXIT_OK:
            raise WorkerExit(code, f"outbox relay stopped with status {code}")
