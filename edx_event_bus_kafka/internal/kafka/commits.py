"""Commits: the ``TopicPartition`` objects of an offset commit (which offsets: ``consume.frontier``).

``metadata``, when set, goes with every commit: Kafka keeps it with the committed offset (a worker
started with a replay flag marks its commits so that a restart does not replay again).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from confluent_kafka import TopicPartition


def positions(offsets: Mapping[tuple[str, int], int], metadata: str | None = None) -> list[TopicPartition]:
    """``TopicPartition`` objects to commit ``offsets`` (by topic and partition), each with ``metadata``."""
    from confluent_kafka import TopicPartition

    if metadata is None:
        return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]
    return [TopicPartition(topic, partition, offset, metadata) for (topic, partition), offset in offsets.items()]
