"""A service process that produces events, for shutdown tests: ``python -m tests.support.produce_script TOPIC``.

Sends ``--count`` events through ``create_producer()``, prints ``sent N``, then either exits
normally (relying on the exit flush) or, with ``--wait``, waits for a signal.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from openedx_events.data import EventsMetadata  # noqa: E402

from edx_event_bus_kafka import create_producer  # noqa: E402
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("topic")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args()
    producer = create_producer()
    assert producer is not None
    for number in range(args.count):
        metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
        producer.send(signal=ENROLLMENT_SIGNAL, topic=args.topic, event_key_field=ENROLLMENT_KEY_FIELD,
                      event_data=enrollment_event_data(number), event_metadata=metadata)
    print(f"sent {args.count}", flush=True)
    if args.wait:
        threading.Event().wait()  # until a signal ends the process
    return 0


if __name__ == "__main__":
    sys.exit(main())
