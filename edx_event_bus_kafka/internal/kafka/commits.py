"""Commits: only offsets of messages that are done.

:class:`DoneOffsets` keeps, per partition, the offset after the last message that is done
(processed, dead-lettered or deliberately skipped). Messages of a partition are handled in order,
so committing that offset never skips an unfinished message. Commits are asynchronous after each
batch and synchronous on partition revocation and shutdown.

``metadata``, when set, goes with every commit: Kafka keeps it with the committed offset (a worker
started with a replay flag marks its commits so that a restart does not replay again).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)


def positions(offsets: Mapping[tuple[str, int], int], metadata: str | None = None) -> list[Any]:
    """``TopicPartition`` objects to commit ``offsets`` (by topic and partition), each with ``metadata``."""
    from confluent_kafka import TopicPartition

    if metadata is None:
        return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]
    return [TopicPartition(topic, partition, offset, metadata) for (topic, partition), offset in offsets.items()]


class DoneOffsets:
    """Next offset to commit per (topic, partition)."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}
        self._pending = False
        self.metadata: str | None = None  # commit metadata of every commit, if any

    def done(self, message: Any) -> None:
        """Mark ``message`` done: its offset + 1 becomes committable."""
        self._next[(message.topic(), message.partition())] = message.offset() + 1
        self._pending = True

    def _partitions(self, only: Any = None) -> list[Any]:
        wanted = None if only is None else {(p.topic, p.partition) for p in only}
        chosen = {place: offset for place, offset in self._next.items() if wanted is None or place in wanted}
        return positions(chosen, self.metadata)

    def commit_async(self, consumer: Any) -> None:
        """Commit what is done, without waiting (after each batch)."""
        if self._pending and self._next:
            consumer.commit(offsets=self._partitions(), asynchronous=True)
            self._pending = False

    def commit_sync(self, consumer: Any, partitions: Any = None) -> None:
        """Commit what is done (of ``partitions``, or all) and wait for the broker."""
        offsets = self._partitions(partitions)
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=False)

    def forget(self, partitions: Any) -> None:
        """Drop partitions no longer assigned to us."""
        for partition in partitions:
            self._next.pop((partition.topic, partition.partition), None)
