"""``./manage.py consume_events -t TOPIC -g GROUP``: run one consumer worker.

Compatible with openedx-events' command of the same name (``-t``, ``-g``, ``--extra``), plus
first-class flags for our options. Exit status: 0 stopped cleanly (or consumers disabled), 1 fatal
Kafka error, 2 invalid configuration, 3 too many consecutive errors, 4 forced stop.
"""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser
from openedx_events.tooling import load_all_signals

from edx_event_bus_kafka.internal.consume.consumer import KafkaEventConsumer
from edx_event_bus_kafka.internal.runtime.worker import EXIT_CONFIG, WorkerExit
from edx_event_bus_kafka.management.base import EventBusCommand


class Command(EventBusCommand):
    help = """
    Consume events from a topic and re-emit each as its Django signal, at least once.

    examples:
        ./manage.py consume_events -t user-login -g user-activity-service
        ./manage.py consume_events -t user-login -g user-activity-service --offset-time 2026-11-28T09:00:00Z
        ./manage.py consume_events -t course-catalog -g search-indexer --concurrency 16
        ./manage.py consume_events -t user-login -g svc --extra '{"event_types": ["org.openedx...v1"]}'
    """
    # Settings are validated by the consumer itself, which exits with status 2 when they are bad.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-t", "--topic", nargs=1, required=True, help="Topic to consume (without prefix)")
        parser.add_argument("-g", "--group_id", "--group-id", nargs=1, required=True, help="Consumer group id")
        parser.add_argument("--extra", nargs="?", type=str, help="JSON object of extra consumer options")
        parser.add_argument("--offset-time", help="Replay from this ISO 8601 time (timezone required), then go on")
        parser.add_argument("--from-beginning", action="store_true", help="Replay the whole topic, then go on")
        parser.add_argument("--event-type", action="append", dest="event_types",
                            help="Only emit this event type (repeatable); others are skipped")
        parser.add_argument("--heartbeat-file", help="File kept fresh while making progress (see event_bus_health)")
        parser.add_argument("--concurrency", type=int, metavar="N",
                            help="Threads processing messages (default EVENT_BUS_KAFKA_CONSUMER_CONCURRENCY, 1)")
        parser.add_argument("--ordering", choices=("key", "partition", "none"),
                            help="What concurrent processing keeps in order "
                                 "(default EVENT_BUS_KAFKA_CONSUMER_ORDERING)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            extra = json.loads(options.get("extra") or "{}")
        except json.JSONDecodeError as error:
            self.stderr.write(f"--extra is not valid JSON: {error}")
            raise WorkerExit(EXIT_CONFIG, "invalid --extra") from error
        if not isinstance(extra, dict):
            self.stderr.write("--extra must be a JSON object")
            raise WorkerExit(EXIT_CONFIG, "invalid --extra")
        if options.get("offset_time"):
            extra["offset_time"] = options["offset_time"]
        if options.get("from_beginning"):
            extra["from_beginning"] = True
        if options.get("event_types"):
            extra["event_types"] = options["event_types"]
        if options.get("heartbeat_file"):
            extra["heartbeat_file"] = options["heartbeat_file"]
        for name in ("concurrency", "ordering"):
            if options.get(name) is not None:
                extra[name] = options[name]
        load_all_signals()
        consumer = KafkaEventConsumer(topic=options["topic"][0], group_id=options["group_id"][0], **extra)
        consumer.consume_indefinitely()
