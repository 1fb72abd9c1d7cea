"""``./manage.py produce_event``: send one event to the bus, for testing and for re-sending a failed one.

The flags are the reference's. ``--data`` is the JSON of the signal's keyword arguments; the
``event_data`` JSON in a producer error log line can be pasted here as it is.
"""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.module_loading import import_string
from openedx_events.data import EventsMetadata
from openedx_events.tooling import OpenEdxPublicSignal

from edx_event_bus_kafka.internal.produce.delivery import OutgoingEvent
from edx_event_bus_kafka.internal.produce.producer import create_producer
from edx_event_bus_kafka.internal.settings.clients import get_full_topic
from edx_event_bus_kafka.management.base import EventBusCommand, positive_seconds


class Command(EventBusCommand):
    help = """
    Produce one event with the given data to a topic (without prefix), and wait for the broker's
    acknowledgement. Exits non-zero if the event was not delivered.

    example:
        ./manage.py produce_event --signal openedx_events.learning.signals.SESSION_LOGIN_COMPLETED \\
          --topic user-login --key-field user.pii.username \\
          --data '{"user": {"id": 123, "is_active": true,
                            "pii": {"username": "foobob", "email": "bob@foo.example", "name": "Bob Foo"}}}'
    """

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--signal", nargs=1, required=True, help="Dotted path to an OpenEdxPublicSignal")
        parser.add_argument("--topic", nargs=1, required=True, help="Topic to produce to (without prefix)")
        parser.add_argument("--key-field", nargs=1, required=True, help="Dotted path to the event key in the data")
        parser.add_argument("--data", nargs=1, required=True, help="JSON object of the signal's keyword arguments")
        parser.add_argument("--timeout", type=positive_seconds, default=30.0,
                            help="Seconds to wait for delivery (default 30)")

    def handle(self, *args: Any, **options: Any) -> None:
        signal = self._load_signal(options["signal"][0])
        try:
            event_data = json.loads(options["data"][0])
        except json.JSONDecodeError as error:
            raise CommandError(f"--data is not valid JSON: {error}") from error
        if not isinstance(event_data, dict):
            raise CommandError("--data must be a JSON object of the signal's keyword arguments")
        producer = create_producer()
        if producer is None:
            raise CommandError("The event bus is not configured: set EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS")
        before = producer.stats.snapshot()["failed"]
        metadata = EventsMetadata(event_type=signal.event_type)
        producer.produce_now(OutgoingEvent(signal, options["topic"][0], options["key_field"][0], event_data, metadata))
        try:
            undelivered = producer.prepare_for_shutdown(options["timeout"])
        except KeyboardInterrupt:
            # Ctrl-C: give up now. The event is purged, which logs it for re-sending, and nothing is
            # left for the exit-time flush to wait for.
            producer.close(timeout=0)
            raise
        failed = producer.stats.snapshot()["failed"] - before
        if producer.refusals.reason is not None:
            raise CommandError(f"Event {metadata.id} was not delivered: Kafka refused the producer: "
                               f"{producer.refusals.reason}")
        if failed or undelivered:
            raise CommandError(f"Event {metadata.id} was not delivered; the error is logged above")
        self.stdout.write(f"Delivered event {metadata.id} ({signal.event_type}) to topic "
                          f"{get_full_topic(options['topic'][0])}")

    @staticmethod
    def _load_signal(path: str) -> OpenEdxPublicSignal:
        try:
            signal = import_string(path)
        except ImportError as error:
            raise CommandError(f"--signal {path!r} cannot be imported: {error}") from error
        if not isinstance(signal, OpenEdxPublicSignal):
            raise CommandError(f"--signal {path!r} is a {type(signal).__name__}, not an OpenEdxPublicSignal")
        return signal
