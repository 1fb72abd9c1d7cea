"""Outbox helper processes: ``python -m tests.support.outbox_script write|crash-relay|send-one ...``.

``write --topic T --count N --keys K``: send N events in outbox mode, ten per transaction, event
``n`` with key ``course-v1:edX+K{n % K}+2026``; prints ``wrote N``.
``crash-relay``: a relay that publishes one batch, waits for the broker's acknowledgement, prints
``acknowledged N`` and then hangs before marking the rows, so a test can kill -9 it at exactly
that point.
``send-one --topic T``: what a web request does, one send outside any transaction; prints
``returned; event_id=... outboxed=N failed=N`` once ``send`` has returned.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.db import transaction  # noqa: E402
from openedx_events.data import EventsMetadata  # noqa: E402
from openedx_events.tooling import load_all_signals  # noqa: E402

from edx_event_bus_kafka import create_producer  # noqa: E402
from edx_event_bus_kafka.internal.outbox import publisher as outbox  # noqa: E402
from edx_event_bus_kafka.internal.outbox.relay import OutboxRelay  # noqa: E402
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data  # noqa: E402


def write(args: argparse.Namespace) -> int:
    producer = create_producer()
    assert producer is not None
    for start in range(0, args.count, 10):
        with transaction.atomic():
            for number in range(start, min(start + 10, args.count)):
                data = enrollment_event_data(number, course=f"course-v1:edX+K{number % args.keys}+2026")
                producer.send(signal=ENROLLMENT_SIGNAL, topic=args.topic, event_key_field=ENROLLMENT_KEY_FIELD,
                              event_data=data, event_metadata=EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type))
    assert producer.stats.snapshot()["outboxed"] == args.count, producer.stats.snapshot()
    print(f"wrote {args.count}", flush=True)
    producer.close(timeout=5)
    return 0


def send_one(args: argparse.Namespace) -> int:
    """What a web request does: one send in outbox mode, outside any transaction; prints ``returned``."""
    producer = create_producer()
    assert producer is not None
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    producer.send(signal=ENROLLMENT_SIGNAL, topic=args.topic, event_key_field=ENROLLMENT_KEY_FIELD,
                  event_data=enrollment_event_data(4242), event_metadata=metadata)
    counts = producer.stats.snapshot()
    print(f"returned; event_id={metadata.id} outboxed={counts['outboxed']} failed={counts['failed']}", flush=True)
    return 0


def crash_relay(_args: argparse.Namespace) -> int:
    def hang_before_marking(self: outbox.OutboxPublisher, rows: list, outcomes: dict, result: object) -> None:
        acknowledged = sum(1 for row in rows if outcomes.get(row.id, "missing") is None)
        print(f"acknowledged {acknowledged}", flush=True)
        threading.Event().wait()  # the test kills us here

    outbox.OutboxPublisher._mark = hang_before_marking  # type: ignore[method-assign]
    load_all_signals()
    return OutboxRelay().run()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["write", "crash-relay", "send-one"])
    parser.add_argument("--topic", default="outbox-topic")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--keys", type=int, default=3)
    args = parser.parse_args()
    actions = {"write": write, "crash-relay": crash_relay, "send-one": send_one}
    return actions[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
