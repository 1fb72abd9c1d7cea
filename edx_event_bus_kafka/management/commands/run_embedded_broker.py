"""``./manage.py run_embedded_broker``: a Kafka-protocol broker in the foreground for local work.

Data lives in memory and is gone when the command stops (Ctrl-C).
"""
from __future__ import annotations

import signal
import socket
import threading
from typing import Any

from django.core.management.base import CommandError, CommandParser

from edx_event_bus_kafka.internal.errors import EmbeddedBrokerError
from edx_event_bus_kafka.management.base import EventBusCommand
from edx_event_bus_kafka.testing import EmbeddedKafkaBroker


class Command(EventBusCommand):
    requires_system_checks: list[str] = []  # noqa: RUF012 -- it serves before a broker is set (W001)
    help = "Run an embedded Kafka-protocol broker (Tansu, in memory) on loopback until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, default=9092, help="Port on 127.0.0.1 (default 9092; 0 = any free port)"
        )
        parser.add_argument("--topic", action="append", default=[], help="Topic to create at start (repeatable)")
        parser.add_argument("--partitions", type=int, default=1, help="Partitions for each --topic (default 1)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["port"] and not _port_free(options["port"]):
            # Else whatever holds the port answers the readiness check, and the broker then panics.
            raise CommandError(f"port {options['port']} on 127.0.0.1 is in use (another broker?); choose another "
                               "with --port, or --port 0 for any free one")
        broker = EmbeddedKafkaBroker(port=options["port"] or None)
        try:
            broker.start()
            broker.create_topics(options["topic"], partitions=options["partitions"])
        except EmbeddedBrokerError as error:
            broker.stop()
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Embedded Kafka broker ready on {broker.bootstrap_servers} "
            f"(started in {broker.startup_seconds:.2f} s).\n"
            f"Set EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = '{broker.bootstrap_servers}'. Press Ctrl-C to stop."
        )
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                if not broker.running:
                    raise CommandError(f"the broker exited unexpectedly:\n{broker.log_tail()}")
        finally:
            broker.stop()
            self.stdout.write("Embedded Kafka broker stopped.")


def _port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of 127.0.0.1 (a bind succeeds)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
