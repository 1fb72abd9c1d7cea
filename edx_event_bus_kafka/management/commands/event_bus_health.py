"""``./manage.py event_bus_health``: a liveness/readiness probe for event bus workers.

Exit status 0 with a one-line reason when the worker's heartbeat file is fresh (and, with
``--check-broker``, the broker answers); 1 with the reason otherwise. Example Kubernetes probe::

    livenessProbe:
      exec:
        command: ["python", "manage.py", "event_bus_health", "--heartbeat-file", "/tmp/worker.alive",
                  "--max-age", "120"]
      periodSeconds: 30
"""
from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandParser

from edx_event_bus_kafka.internal.runtime.heartbeat import Health, evaluate
from edx_event_bus_kafka.management.base import EventBusCommand, positive_seconds


class Command(EventBusCommand):
    help = "Exit 0 if the worker's heartbeat file is fresh (and the broker answers, with --check-broker), else 1."
    requires_system_checks = ()  # a probe must be fast and must not fail for unrelated settings

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--heartbeat-file", required=True, help="The file the worker writes (its --heartbeat-file)")
        parser.add_argument("--max-age", type=positive_seconds, default=120.0,
                            help="Seconds without progress after which the worker counts as stuck (default 120)")
        parser.add_argument("--check-broker", action="store_true", help="Also require a metadata answer from Kafka")
        parser.add_argument("--require-partitions", action="store_true",
                            help="Fail for a consume_events worker with no partitions assigned (not for standbys)")

    def handle(self, *args: Any, **options: Any) -> None:
        health = evaluate(options["heartbeat_file"], options["max_age"],
                          require_partitions=options["require_partitions"])
        if health.healthy and options["check_broker"]:
            health = _broker_health()
        self.stdout.write(health.reason)
        if not health.healthy:
            sys.exit(1)


def _broker_health() -> Health:
    from edx_event_bus_kafka.internal.errors import BrokerRefusedError
    from edx_event_bus_kafka.internal.kafka.clients import new_admin
    from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch, list_topics_watched
    from edx_event_bus_kafka.internal.settings.clients import admin_client_config

    watch = RefusalWatch("health probe")
    try:
        list_topics_watched(new_admin(admin_client_config(), error_cb=watch.seen), watch, timeout=5)
    except BrokerRefusedError as error:
        return Health(False, str(error))
    except Exception as error:  # noqa: BLE001 -- any failure means "not reachable" for a probe
        return Health(False, f"broker unreachable: {error}")
    return Health(True, "ok: heartbeat fresh and broker answers")
