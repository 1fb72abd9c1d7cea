"""Producing sample events through our producer, for tests that need messages on a topic."""
from __future__ import annotations

from typing import Any

from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import create_producer
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data


def event_data(number: int) -> dict[str, Any]:
    """Enrollment number ``number`` in course ``C{number}``, so keys spread over partitions."""
    return enrollment_event_data(number, course=f"course-v1:edX+C{number}+2026")


def produce(topic: str, count: int, start: int = 0) -> list[EventsMetadata]:
    """Send ``count`` enrollment events with our producer and wait until all are acknowledged."""
    producer = create_producer()
    assert producer is not None
    sent = []
    for number in range(start, start + count):
        metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
        producer.send(signal=ENROLLMENT_SIGNAL, topic=topic, event_key_field=ENROLLMENT_KEY_FIELD,
                      event_data=event_data(number), event_metadata=metadata)
        sent.append(metadata)
    assert producer.prepare_for_shutdown(10) == 0
    return sent
