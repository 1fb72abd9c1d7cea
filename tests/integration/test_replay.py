"""Replay by time: the group moves to the first offset at or after a time, then keeps consuming.

Runs against noida-db, which answers ListOffsets by time (the embedded Tansu broker always answers 0).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.headers import headers_from_metadata
from edx_event_bus_kafka.internal.serialization import encoder_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support.noida import NOIDA_CONSUMER_CONFIG, NoidaKafka
from tests.support.workers import Worker

pytestmark = pytest.mark.integration

BASE_MS = 1_795_000_000_000  # 2026-11-18T11:06:40Z: an arbitrary past time for the messages' timestamps


@pytest.fixture(scope="module")
def noida():
    broker = NoidaKafka().start()
    try:
        yield broker
    finally:
        broker.stop()


def produce_at(bootstrap: str, topic: str, numbers: range, *, timestamps: bool = True) -> dict[int, str]:
    """Event ``n`` on partition n % 2 with timestamp BASE + n seconds; returns event ids by number."""
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    ids = {}
    for number in numbers:
        metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
        key, value = encoder_for(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, topic).encode(enrollment_event_data(number))
        headers: Any = headers_from_metadata(metadata)
        timestamp = BASE_MS + number * 1000 if timestamps else 0  # 0: the producer's current time
        producer.produce(topic, key=key, value=value, headers=headers, partition=number % 2, timestamp=timestamp)
        ids[number] = str(metadata.id)
    assert producer.flush(10) == 0
    return ids


def test_offset_time__group_replays_from_that_time_then_keeps_consuming(noida, tmp_path):
    """--offset-time moves the group to the first message at/after the time on every partition, then goes on."""
    topic, group = "replay-topic", "replay-group"
    noida.create_topic(topic, partitions=2)
    ids = produce_at(noida.bootstrap_servers, topic, range(6))
    settings = {"EVENT_BUS_KAFKA_CONSUMER_CONFIG": NOIDA_CONSUMER_CONFIG}

    # The group has consumed everything: its committed offsets are at the end of both partitions.
    # (Committed directly: after a consume_events run noida-db answers later time lookups with -1,
    # a noida-db quirk that real Kafka does not have.)
    committer = Consumer({"bootstrap.servers": noida.bootstrap_servers, "group.id": group, "log_level": 0})
    committer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 3)], asynchronous=False)
    committer.close()

    when = datetime.fromtimestamp((BASE_MS + 2500) / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    replay = Worker.consume_events(tmp_path, noida.bootstrap_servers, topic, group, "--offset-time", when,
                                   settings=settings, name="replay", log_path=tmp_path / "replay.jsonl").start()
    try:
        replay.wait_for_entries(lambda e: len([x for x in e if x["phase"] == "done"]) >= 3, timeout=60)
        later = produce_at(noida.bootstrap_servers, topic, range(6, 7), timestamps=False)
        replay.wait_for_entries(lambda e: later[6] in {x["id"] for x in e if x["phase"] == "done"}, timeout=30)
    finally:
        assert replay.stop() == 0, replay.output()
    replayed = [e["id"] for e in replay.entries("done")]
    assert sorted(replayed) == sorted([ids[3], ids[4], ids[5], later[6]])
    assert "Replaying from 2026-11-18T11:06:42.500000+00:00" in replay.output()
