"""Reading back what was produced, straight from the broker with confluent-kafka."""
from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer

from edx_event_bus_kafka.testing import fast_consumer_config


def read_messages(bootstrap: str, topic: str, count: int, *, timeout: float = 20.0) -> list[Any]:
    """The first ``count`` messages of ``topic`` (all partitions), read by a fresh consumer group.

    Stops at ``count`` messages or after ``timeout`` seconds, whichever comes first; the caller
    asserts on what came back.
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "log_level": 0, **fast_consumer_config(),
        # The topic may not exist yet (a dead-letter topic, say): notice it soon after it appears.
        "topic.metadata.refresh.interval.ms": 500,
    })
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    return messages


def read_nothing_more(bootstrap: str, topic: str, expected: int, *, quiet_for: float = 2.0) -> list[Any]:
    """All messages of ``topic`` when at most ``expected`` are there, waiting ``quiet_for`` s for extras."""
    return read_messages(bootstrap, topic, expected + 1, timeout=quiet_for + 3.0)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (negative when nothing is committed)."""
    from confluent_kafka import TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        found = consumer.committed([TopicPartition(topic, number) for number in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def places(bootstrap: str, topic: str, count: int) -> dict[str, tuple[int, int]]:
    """Event id (``ce_id``) -> (partition, offset) of the first ``count`` messages of ``topic``."""
    return {dict(m.headers())["ce_id"].decode(): (m.partition(), m.offset())
            for m in read_messages(bootstrap, topic, count, timeout=30)}
