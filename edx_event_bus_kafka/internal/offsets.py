"""Offsets: committing only what is done, and moving a group to a point in time.

:class:`DoneOffsets` keeps, per partition, the offset after the last message that is done
(processed, dead-lettered or deliberately skipped). Messages of a partition are handled in order,
so committing that offset never skips an unfinished message. Commits are asynchronous after each
batch and synchronous on partition revocation and shutdown.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from .errors import ConfigurationError

logger = logging.getLogger(__name__)


class DoneOffsets:
    """Next offset to commit per (topic, partition)."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}
        self._pending = False

    def done(self, message: Any) -> None:
        """Mark ``message`` done: its offset + 1 becomes committable."""
        self._next[(message.topic(), message.partition())] = message.offset() + 1
        self._pending = True

    def _partitions(self, only: Any = None) -> list[Any]:
        from confluent_kafka import TopicPartition

        wanted = None if only is None else {(p.topic, p.partition) for p in only}
        return [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in self._next.items()
            if wanted is None or (topic, partition) in wanted
        ]

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


def parse_offset_time(value: Any) -> datetime | None:
    """The replay time of an ``offset_time`` option (ISO 8601 text or datetime), timezone required.

    Raises:
        ConfigurationError: unparseable, or naive (it would silently be read as local time).

    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError([f"offset_time={value!r} is not an ISO 8601 date-time"]) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ConfigurationError([
            f"offset_time={value!r} has no timezone; add one, e.g. '2026-11-28T12:00:00+00:00' or 'Z' for UTC"
        ])
    return parsed.astimezone(UTC)


def offsets_at(consumer: Any, topic: str, when: datetime | None, timeout: float = 10.0) -> list[Any]:
    """For every partition of ``topic``: the first offset at or after ``when`` (None = the beginning).

    Partitions with no message at or after ``when`` get their end offset, so nothing is replayed there.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    metadata = consumer.list_topics(topic, timeout=timeout)
    numbers = sorted(metadata.topics[topic].partitions)
    if when is None:
        found = []
        for number in numbers:
            low, _high = consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=timeout)
            found.append(TopicPartition(topic, number, low if low >= 0 else OFFSET_BEGINNING))
        return found
    stamp_ms = int(when.timestamp() * 1000)
    found = consumer.offsets_for_times([TopicPartition(topic, n, stamp_ms) for n in numbers], timeout=timeout)
    for partition in found:
        if partition.error is not None:
            raise RuntimeError(f"could not find offsets for {when.isoformat()} on {topic}: {partition.error}")
        if partition.offset < 0:
            _low, high = consumer.get_watermark_offsets(partition, timeout=timeout)
            partition.offset = high
    return list(found)
