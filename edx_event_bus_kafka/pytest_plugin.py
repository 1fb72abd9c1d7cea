"""pytest fixtures for services that test their event bus code against a real broker (public API).

Registered automatically through the ``pytest11`` entry point when the package is installed.

Options (or the environment variables of the same meaning, which subprocesses also see):

- ``--kafka-broker=tansu|apache`` (``EVENT_BUS_TEST_KAFKA_BROKER``): which broker ``kafka_broker``
  runs; default ``tansu``, which needs no Java. Tests marked ``apache_kafka`` need Apache Kafka and
  are deselected (not skipped) when another broker is chosen.
- ``--kafka-group-protocol=classic|consumer`` (``EVENT_BUS_TEST_GROUP_PROTOCOL``): the consumer
  group protocol of ``consumer_config()`` (KIP-848 ``consumer`` needs Apache Kafka 4.x).

Fixtures:

- ``kafka_broker``: one :class:`~edx_event_bus_kafka.testing.KafkaTestBroker` of the chosen kind
  per test session.
- ``embedded_kafka_broker``: one Tansu :class:`~edx_event_bus_kafka.testing.EmbeddedKafkaBroker`
  per test session, whatever the option says.
- ``kafka_broker_factory``: makes more brokers of the chosen kind for one test (stopped after it),
  for tests that stop or restart a broker.
- ``kafka_topic``: a fresh, uniquely named topic on ``kafka_broker`` for one test (3 partitions).
- ``memory_kafka``: an :class:`~edx_event_bus_kafka.testing.memory.InMemoryKafka` that every client
  of the event bus uses during one test, with ``EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS`` pointing at it.
- ``published_events``: :func:`~edx_event_bus_kafka.testing.capture_events` for one test: the
  events the service publishes during the test, decoded.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .testing import (
    BROKER_KINDS,
    GROUP_PROTOCOLS,
    EmbeddedKafkaBroker,
    KafkaTestBroker,
    PublishedEvents,
    capture_events,
    make_test_broker,
    selected_broker_kind,
    selected_group_protocol,
)
from .testing.brokers import BROKER_ENV, GROUP_PROTOCOL_ENV
from .testing.memory import InMemoryKafka

APACHE_ONLY_MARKER = "apache_kafka"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--kafka-broker`` and ``--kafka-group-protocol``."""
    group = parser.getgroup("edx-event-bus-kafka")
    group.addoption("--kafka-broker", choices=BROKER_KINDS, default=None,
                    help=f"broker behind the kafka_broker fixture (default: ${BROKER_ENV} or tansu)")
    group.addoption("--kafka-group-protocol", choices=GROUP_PROTOCOLS, default=None,
                    help=f"consumer group protocol of test consumers (default: ${GROUP_PROTOCOL_ENV} or classic)")


def pytest_configure(config: pytest.Config) -> None:
    """Publish the choices as environment variables, so helpers and subprocesses agree."""
    config.addinivalue_line("markers", f"{APACHE_ONLY_MARKER}: needs Apache Kafka (deselected on other brokers)")
    broker = config.getoption("--kafka-broker", default=None)
    if broker:
        os.environ[BROKER_ENV] = broker
    protocol = config.getoption("--kafka-group-protocol", default=None)
    if protocol:
        os.environ[GROUP_PROTOCOL_ENV] = protocol
    selected_broker_kind()  # a bad environment value fails the run at once, naming it
    selected_group_protocol()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests marked ``apache_kafka`` unless Apache Kafka is the chosen broker."""
    if selected_broker_kind() == "apache":
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (dropped if item.get_closest_marker(APACHE_ONLY_MARKER) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaTestBroker]:
    """A real broker of the chosen kind on loopback for the whole session."""
    broker = make_test_broker().start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def embedded_kafka_broker() -> Iterator[EmbeddedKafkaBroker]:
    """A Tansu broker on loopback for the whole session."""
    broker = EmbeddedKafkaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_broker_factory() -> Iterator[Callable[..., KafkaTestBroker]]:
    """``factory(**options)`` starts another broker of the chosen kind; all are stopped after the test."""
    started: list[KafkaTestBroker] = []

    def factory(**options: Any) -> KafkaTestBroker:
        broker = make_test_broker(**options)
        started.append(broker)
        return broker.start()

    try:
        yield factory
    finally:
        for broker in started:
            broker.close()


@pytest.fixture
def kafka_topic(kafka_broker: KafkaTestBroker, request: pytest.FixtureRequest) -> str:
    """A new topic with 3 partitions, named after the test."""
    safe = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:60]
    name = f"test-{safe}-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topics([name], partitions=3)
    return name


@pytest.fixture
def memory_kafka() -> Iterator[InMemoryKafka]:
    """An in-memory Kafka for one test: the event bus's clients use it, and the bootstrap setting names it."""
    from django.test import override_settings

    with InMemoryKafka() as kafka, override_settings(EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers):
        yield kafka


@pytest.fixture
def published_events() -> Iterator[PublishedEvents]:
    """The events the service publishes during the test, decoded (delivery mode ``immediate``)."""
    with capture_events() as published:
        yield published
