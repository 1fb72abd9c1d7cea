"""Commits: only offsets of messages that are done.

:class:`DoneOffsets` keeps, per partition, the offset after the last message that is done
(processed, dead-lettered or deliberately skipped). Messages of a partition are handled in order,
so committing that offset never skips an unfinished message. Commits are asynchronous after each
batch and synchronous on partition revocation and shutdown.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from edx_event_bus_kafka.internal.kafka.protocols import ConsumerClient, Message

if TYPE_CHECKING:
    from confluent_kafka import TopicPartition

logger = logging.getLogger(__name__)


class DoneOffsets:
    """Next offset to commit per (topic, partition)."""

    def __init__(self) -> None:
        # (topic, partition) -> offset of the last message done there; its offset + 1 is committed.
        self._last: dict[tuple[str | None, int | None], int | None] = {}
        self._pending = False

    def done(self, message: Message) -> None:
        """Mark ``message`` done: its offset + 1 becomes committable."""
        self._last[(message.topic(), message.partition())] = message.offset()  # per message: nothing more
        self._pending = True

    def _partitions(self, only: Iterable[TopicPartition] | None = None) -> list[TopicPartition]:
        from confluent_kafka import TopicPartition

        wanted = None if only is None else {(p.topic, p.partition) for p in only}
        return [
            TopicPartition(str(topic), int(partition or 0), int(offset or 0) + 1)
            for (topic, partition), offset in self._last.items()
            if wanted is None or (topic, partition) in wanted
        ]

    def commit_async(self, consumer: ConsumerClient) -> None:
        """Commit what is done, without waiting (after each batch)."""
        if self._pending and self._last:
            consumer.commit(offsets=self._partitions(), asynchronous=True)
            self._pending = False

    def commit_sync(self, consumer: ConsumerClient, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Commit what is done (of ``partitions``, or all) and wait for the broker."""
        offsets = self._partitions(partitions)
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=False)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop partitions no longer assigned to us."""
        for partition in partitions:
            self._last.pop((partition.topic, partition.partition), None)
