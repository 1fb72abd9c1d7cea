"""Key-ordered parallel consumption (``EVENT_BUS_KAFKA_CONSUMER_CONCURRENCY`` > 1) on the in-memory Kafka.

The real-process tests, on both brokers, are in tests/integration/test_parallel_consumer.py.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict

import pytest
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import KafkaEventConsumer
from edx_event_bus_kafka.internal.runtime.worker import EXIT_OK
from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import encoder_for
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support.memory_bus import run_until


@pytest.fixture
def topic(bus) -> str:
    """A fresh topic with 2 partitions."""
    name = f"parallel-{uuid.uuid4().hex[:8]}"
    bus.create_topic(name, 2)
    return name


def send_keyed(bus, topic: str, count: int, keys: int) -> None:
    """Events 0..count-1 (user id = number) with course key ``K(number % keys)``, placed by key."""
    encoder = encoder_for(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, topic)
    for number in range(count):
        key, value = encoder.encode(enrollment_event_data(number, course=f"course-v1:edX+K{number % keys}+2026"))
        headers = headers_from_metadata(EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type))
        bus.send(topic, value, key=key, headers=headers)


def test_parallel__each_event_once_per_key_order_and_backpressure_pauses_fetching(bus, topic, receiver, settings,
                                                                                 caplog):
    """4 threads, at most 4 in flight: all 80 events run once, each key in order, fetching pauses and resumes."""
    caplog.set_level(logging.DEBUG, logger="edx_event_bus_kafka.internal.consume.parallel")
    settings.EVENT_BUS_KAFKA_CONSUMER_MAX_IN_FLIGHT = 4
    send_keyed(bus, topic, 80, keys=6)
    receiver.on_call = lambda _call: time.sleep(0.002)
    consumer = KafkaEventConsumer(topic, "group", concurrency=4)
    assert run_until(consumer, lambda: bus.committed("group", topic) == {
        number: len(bus.messages(topic, number)) for number in (0, 1)}, what="the whole topic committed") == EXIT_OK
    assert sorted(receiver.user_ids) == list(range(80))
    by_key: dict[int, list[int]] = defaultdict(list)
    for user_id in receiver.user_ids:
        by_key[user_id % 6].append(user_id)
    assert all(ids == sorted(ids) for ids in by_key.values()), by_key
    assert "Paused fetching" in caplog.text and "Resumed fetching" in caplog.text


def test_parallel__a_slow_early_message_holds_the_committed_offset_back(bus, receiver):
    """Event 0 waits while later events of other keys finish: nothing past event 0 is committed until it is done."""
    topic = f"parallel-{uuid.uuid4().hex[:8]}"
    bus.create_topic(topic, 1)
    send_keyed(bus, topic, 10, keys=10)
    release = threading.Event()
    receiver.on_call = lambda call: release.wait(10) if call["enrollment"].user.id == 0 else None
    consumer = KafkaEventConsumer(topic, "group", concurrency=3)
    thread = threading.Thread(target=consumer.run, name="test-consumer")
    thread.start()
    try:
        wait_for(lambda: set(receiver.user_ids) == set(range(10)), timeout=10, what="every event started")
        # The nine others finish, and the loop then runs a commit round with all nine counted.
        wait_for(lambda: consumer._parallel is not None and consumer._parallel._finished_at_commit == 9,
                 timeout=10, what="a commit round after the nine later events finished")
        assert bus.committed("group", topic).get(0, 0) == 0
        release.set()
        wait_for(lambda: bus.committed("group", topic) == {0: 10}, timeout=10, what="the frontier to move")
    finally:
        release.set()
        consumer.stop()
        thread.join(10)
    assert not thread.is_alive()
