"""Replay by time: the group moves to the first offset at or after a time, then keeps consuming.

Needs Apache Kafka: Tansu answers every ListOffsets-by-time request with offset 0.
"""
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import encoder_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support.workers import Worker

pytestmark = [pytest.mark.integration, pytest.mark.apache_kafka]


def produce_at(bootstrap: str, topic: str, numbers: range, base_ms: int, *, timestamps: bool = True) -> dict[int, str]:
    """Event ``n`` on partition n % 2 with timestamp base + n seconds; returns event ids by number."""
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    ids = {}
    for number in numbers:
        metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
        key, value = encoder_for(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, topic).encode(enrollment_event_data(number))
        headers: Any = headers_from_metadata(metadata)
        timestamp = base_ms + number * 1000 if timestamps else 0  # 0: the producer's current time
        producer.produce(topic, key=key, value=value, headers=headers, partition=number % 2, timestamp=timestamp)
        ids[number] = str(metadata.id)
    assert producer.flush(10) == 0
    return ids


def test_offset_time__group_replays_from_that_time_then_keeps_consuming(kafka_broker, tmp_path):
    """--offset-time moves the group to the first message at/after the time on every partition, then goes on."""
    topic, group = f"replay-{uuid.uuid4().hex[:6]}", f"replay-group-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=2)
    # An hour ago, on a whole second: recent enough for any retention, old enough to be "the past".
    base_ms = (int(time.time()) - 3600) * 1000
    ids = produce_at(kafka_broker.bootstrap_servers, topic, range(6), base_ms)

    # The group has consumed everything: its committed offsets are at the end of both partitions.
    committer = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": group, "log_level": 0})
    committer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 3)], asynchronous=False)
    committer.close()

    when = datetime.fromtimestamp((base_ms + 2500) / 1000, tz=UTC)
    replay = Worker.consume_events(tmp_path, kafka_broker.bootstrap_servers, topic, group, "--offset-time",
                                   when.isoformat().replace("+00:00", "Z"), name="replay",
                                   log_path=tmp_path / "replay.jsonl").start()
    try:
        replay.wait_for_entries(lambda e: len([x for x in e if x["phase"] == "done"]) >= 3, timeout=60)
        later = produce_at(kafka_broker.bootstrap_servers, topic, range(6, 7), base_ms, timestamps=False)
        replay.wait_for_entries(lambda e: later[6] in {x["id"] for x in e if x["phase"] == "done"}, timeout=30)
    finally:
        assert replay.stop() == 0, replay.output()
    replayed = [e["id"] for e in replay.entries("done")]
    assert sorted(replayed) == sorted([ids[3], ids[4], ids[5], later[6]])
    assert f"Replaying from {when.isoformat()}" in replay.output()


@pytest.mark.parametrize("concurrency", ["1", "3"])
def test_offset_time__a_restarted_worker_with_the_flag_does_not_replay_again(kafka_broker, tmp_path, concurrency):
    """The flag replays once per requested time: a restart with it consumes on; another time replays again."""
    topic, group = f"replay-once-{uuid.uuid4().hex[:6]}", f"replay-once-group-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=2)
    base_ms = (int(time.time()) - 3600) * 1000
    ids = produce_at(kafka_broker.bootstrap_servers, topic, range(6), base_ms)
    committer = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": group, "log_level": 0})
    committer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 3)], asynchronous=False)
    committer.close()

    def worker(name: str, when: datetime) -> Worker:
        return Worker.consume_events(tmp_path, kafka_broker.bootstrap_servers, topic, group, "--offset-time",
                                     when.isoformat(), "--concurrency", concurrency, name=name,
                                     log_path=tmp_path / f"{name}.jsonl")

    def consume_until(started: Worker, *event_ids: str) -> list[str]:
        """The ids the worker processed, once it has processed ``event_ids`` and stopped."""
        try:
            started.wait_for_entries(lambda e: set(event_ids) <= {x["id"] for x in e if x["phase"] == "done"},
                                     timeout=60)
        finally:
            assert started.stop() == 0, started.output()
        return sorted(e["id"] for e in started.entries("done"))

    when = datetime.fromtimestamp((base_ms + 2500) / 1000, tz=UTC)
    replayed = [ids[3], ids[4], ids[5]]
    assert consume_until(worker("first", when).start(), *replayed) == sorted(replayed)

    restarted = worker("restarted", when).start()
    later = produce_at(kafka_broker.bootstrap_servers, topic, range(6, 7), base_ms, timestamps=False)
    assert consume_until(restarted, later[6]) == [later[6]]  # a replay would bring event 4 first (partition 0)
    assert f"Not replaying from {when.isoformat()}: the group already did" in restarted.output()

    earlier = datetime.fromtimestamp((base_ms + 500) / 1000, tz=UTC)
    replayed = [*(ids[n] for n in range(1, 6)), later[6]]
    assert consume_until(worker("another-time", earlier).start(), *replayed) == sorted(replayed)
