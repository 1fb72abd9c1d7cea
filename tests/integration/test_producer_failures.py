"""An unreachable schema registry: send returns, the failure is logged with context, a later send tries again.

The other failures (bad events, a broker that is down or refuses us) are tested on the in-memory
Kafka in tests/unit/test_producer.py.
"""
from __future__ import annotations

import logging
import socket
import uuid

import pytest
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.testing import wait_for
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


def test_broker_restart_that_forgot_producer_ids__producer_replaces_its_client_and_delivers_again(
    settings, kafka_broker_factory, caplog,
):
    """A long-lived producer keeps delivering after its broker lost the state of idempotent producers.

    Tansu keeps nothing across a restart, so it answers the old client's produce requests with
    UNKNOWN_PRODUCER_ID for ever; Apache Kafka keeps its state, so there is nothing to replace.
    """
    broker = kafka_broker_factory()
    topic = f"restart-{uuid.uuid4().hex[:6]}"
    broker.create_topics([topic], partitions=1)
    settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = broker.bootstrap_servers
    settings.EVENT_BUS_KAFKA_PRODUCER_CONFIG = {"message.timeout.ms": 3000}  # Tansu's InitProducerId takes ~1 s
    settings.EVENT_BUS_KAFKA_POLL_INTERVAL_SEC = 0.1
    producer = create_producer()
    assert producer is not None
    send(producer, topic, enrollment_event_data(1))
    wait_for(lambda: producer.stats.snapshot()["delivered"] == 1, timeout=30, what="the first delivery")
    assert producer.stats.snapshot()["failed"] == 0
    broker.stop()
    broker.start()
    from tests.integration.test_outbox import broker_topics

    if topic not in broker_topics(broker.bootstrap_servers):  # Tansu forgot it too
        broker.create_topics([topic], partitions=1)

    def delivered_again() -> bool:
        send(producer, topic, enrollment_event_data(2))
        producer.client.poll(0.2)
        return producer.stats.snapshot()["delivered"] > 1

    wait_for(delivered_again, timeout=60, interval=0.2, what="a delivery after the restart")
    replaced = [r for r in caplog.records if "replacing the Kafka client" in r.getMessage()]
    assert len(replaced) <= 1, [r.getMessage() for r in replaced]
