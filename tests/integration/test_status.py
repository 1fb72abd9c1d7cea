"""event_bus_status as a real process against a real broker, on a topic with known lag and dead letters.

The report itself (lag, oldest unconsumed message, dead letters, outbox, refusals) is tested on the
in-memory Kafka in tests/unit/test_status.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import encoder_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BASE_MS = 1_795_000_000_000


def produce_one_per_batch(bootstrap: str, topic: str, count: int, partition: int) -> None:
    """``count`` events, each in its own record batch (so the broker's end offset is exact)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 0})
    for number in range(count):
        key, value = encoder_for(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, topic).encode(enrollment_event_data(number))
        headers: Any = headers_from_metadata(EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type))
        producer.produce(topic, key=key, value=value, headers=headers, partition=partition,
                         timestamp=BASE_MS + number * 1000)
        assert producer.flush(10) == 0


def commit(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    consumer.close()


@pytest.fixture
def known_state(bus_settings, kafka_topic):
    """6 messages on partition 0 with the group at offset 2, and 2 dead letters for the group."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = f"status-{uuid.uuid4().hex[:6]}"
    produce_one_per_batch(bootstrap, kafka_topic, 6, partition=0)
    commit(bootstrap, group, kafka_topic, 0, 2)
    produce_one_per_batch(bootstrap, f"{kafka_topic}-{group}-dead-letter", 2, partition=0)
    return bootstrap, kafka_topic, group


def test_status__as_a_process_and_unknown_topic(known_state):
    """The command works as a real process; an unknown topic is a clear non-zero error."""
    bootstrap, topic, group = known_state
    env = {**os.environ, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    ok = subprocess.run([sys.executable, "manage.py", "event_bus_status", "-t", topic, "-g", group, "--json",
                         "--no-outbox"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["total_lag"] == 4
    missing = subprocess.run([sys.executable, "manage.py", "event_bus_status", "-t", "no-such-topic", "-g", group,
                              "--no-outbox"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                             check=False)
    assert missing.returncode != 0
    assert "topic 'no-such-topic' does not exist" in missing.stderr

