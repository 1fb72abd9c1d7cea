"""An unreachable schema registry: send returns, the failure is logged with context, a later send tries again.

The other failures (bad events, a broker that is down or refuses us) are tested on the in-memory
Kafka in tests/unit/test_producer.py.
"""
from __future__ import annotations

import logging
import socket

import pytest
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import create_producer
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data

pytestmark = pytest.mark.integration


def closed_port() -> int:
    """A loopback port with nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def send(producer, topic, event_data, key_field=ENROLLMENT_KEY_FIELD):
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    result = producer.send(signal=ENROLLMENT_SIGNAL, topic=topic, event_key_field=key_field,
                           event_data=event_data, event_metadata=metadata)
    assert result is None
    return metadata


def failure_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.ERROR and "Error delivering message to Kafka event bus" in r.getMessage()]


def assert_logged_with_context(caplog, metadata, topic, reason):
    """The one failure line names the reason, topic, event id, and carries data and metadata as JSON."""
    (line,) = failure_lines(caplog)
    assert f"reason={reason}" in line
    assert f"topic={topic}" in line
    assert f"event_id={metadata.id}" in line
    assert '"username": "learner1"' in line  # event data, re-sendable with produce_event --data
    assert f'"id": "{metadata.id}"' in line  # metadata JSON


def test_unreachable_registry__serialization_failure_logged_and_retried_later(bus_settings, kafka_topic, caplog):
    """An unreachable schema registry fails the event with context; nothing is cached, so a later send retries."""
    bus_settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = f"http://127.0.0.1:{closed_port()}"
    producer = create_producer()
    metadata = send(producer, kafka_topic, enrollment_event_data(1))
    assert_logged_with_context(caplog, metadata, kafka_topic, "serialization")
    send(producer, kafka_topic, enrollment_event_data(1))
    assert producer.stats.snapshot()["failures_by_reason"] == {"serialization": 2}
