"""pytest fixtures for services that test their event bus code against a real broker (public API).

Registered automatically through the ``pytest11`` entry point when the package is installed.

- ``embedded_kafka_broker``: one :class:`~edx_event_bus_kafka.testing.EmbeddedKafkaBroker` per
  test session.
- ``kafka_topic``: a fresh, uniquely named topic on that broker for one test (3 partitions).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from .testing import EmbeddedKafkaBroker


@pytest.fixture(scope="session")
def embedded_kafka_broker() -> Iterator[EmbeddedKafkaBroker]:
    """A real Kafka-protocol broker on loopback for the whole session."""
    broker = EmbeddedKafkaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_topic(embedded_kafka_broker: EmbeddedKafkaBroker, request: pytest.FixtureRequest) -> str:
    """A new topic with 3 partitions, named after the test."""
    safe = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:60]
    name = f"test-{safe}-{uuid.uuid4().hex[:8]}"
    embedded_kafka_broker.create_topics([name], partitions=3)
    return name
