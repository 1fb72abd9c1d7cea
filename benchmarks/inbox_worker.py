"""The processes the inbox benchmark runs: ``python -m benchmarks.inbox_worker fill|consume ...``.

``fill --topic T --events N``: send N COURSE_ENROLLMENT_CHANGED events (each with its own course,
so keys spread over the partitions) with our producer and wait for every acknowledgement.

``consume --topic T --group G --events N``: a ``KafkaEventConsumer`` in this process (its settings,
deduplication included, come through ``EVENT_BUS_SETTINGS_JSON``; the database is PostgreSQL through
``TEST_POSTGRES_*``) whose receiver writes one ``tests.models.EventEffect`` row per event, as a
service's receiver with a database effect does. The receiver notes ``time.perf_counter()``,
``time.process_time()`` and the purger's counters at the first and at the N-th event, then asks the
consumer to stop (it finishes that message, commits and leaves). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from openedx_events.data import EventsMetadata  # noqa: E402
from openedx_events.tooling import load_all_signals  # noqa: E402

from edx_event_bus_kafka import create_producer  # noqa: E402
from edx_event_bus_kafka.internal.consume.consumer import KafkaEventConsumer  # noqa: E402
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data  # noqa: E402
from tests.models import EventEffect  # noqa: E402


def fill(args: argparse.Namespace) -> dict[str, Any]:
    producer = create_producer()
    if producer is None:
        raise SystemExit("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set")
    for number in range(args.events):
        data = enrollment_event_data(number, course=f"course-v1:edX+C{number}+2026")
        producer.send(signal=ENROLLMENT_SIGNAL, topic=args.topic, event_key_field=ENROLLMENT_KEY_FIELD,
                      event_data=data, event_metadata=EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type))
    undelivered = producer.prepare_for_shutdown(60)
    if undelivered:
        raise SystemExit(f"{undelivered} events were not acknowledged")
    return {"filled": args.events}


class Timer:
    """The receiver: writes the effect row, times the first to the N-th event, then stops the consumer."""

    def __init__(self, consumer: KafkaEventConsumer, expected: int):
        self.consumer = consumer
        self.expected = expected
        self.count = 0
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def snapshot(self) -> dict[str, float]:
        """Clocks and the purger's counters now."""
        inbox = self.consumer.inbox
        return {
            "wall": time.perf_counter(), "cpu": time.process_time(),
            "purge_s": inbox.purger.seconds if inbox else 0.0, "purged": float(inbox.purger.purged if inbox else 0),
            "purge_batches": float(inbox.purger.batches if inbox else 0),
        }

    def receive(self, sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
        """The receiver of COURSE_ENROLLMENT_CHANGED."""
        EventEffect.objects.create(event_id=str(kwargs["metadata"].id), user_id=kwargs["enrollment"].user.id,
                                   pid=os.getpid())
        self.count += 1
        if self.count == 1:
            self.first = self.snapshot()
        if self.count == self.expected:
            self.last = self.snapshot()
            self.consumer.stop()


def consume(args: argparse.Namespace) -> dict[str, Any]:
    load_all_signals()
    consumer = KafkaEventConsumer(topic=args.topic, group_id=args.group)
    timer = Timer(consumer, args.events)
    ENROLLMENT_SIGNAL.connect(timer.receive, dispatch_uid="bench_inbox_timer")
    code = consumer.run()
    if code != 0 or not timer.last:
        raise SystemExit(f"consumer exited {code} after {timer.count} of {args.events} events")
    span = timer.last["wall"] - timer.first["wall"]
    timed = args.events - 1
    inbox = consumer.inbox
    return {
        "events": args.events,
        "received": timer.count,
        "effects": EventEffect.objects.count(),
        "deduplication": inbox is not None,
        "duplicates": inbox.duplicates if inbox else 0,
        "span_s": span,
        "events_per_s": timed / span,
        "wall_us_per_event": span * 1e6 / timed,
        "cpu_us_per_event": (timer.last["cpu"] - timer.first["cpu"]) * 1e6 / timed,
        "purge_s": timer.last["purge_s"] - timer.first["purge_s"],
        "purged": int(timer.last["purged"] - timer.first["purged"]),
        "purge_batches": int(timer.last["purge_batches"] - timer.first["purge_batches"]),
        "purged_total": inbox.purger.purged if inbox else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["fill", "consume"])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", help="consume: the consumer group")
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args()
    if args.action == "consume" and not args.group:
        parser.error("consume needs --group")
    result = fill(args) if args.action == "fill" else consume(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
