"""Seeking: the offsets of a point in time, or of the beginning, for replaying a topic.

Used when a worker starts with ``--offset-time`` or ``--from-beginning``: the group's offsets are
moved to what :func:`offsets_at` finds before consuming, once per requested time (``consume.replay``).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edx_event_bus_kafka.internal.errors import ConfigurationError, OffsetLookupError
from edx_event_bus_kafka.internal.kafka.protocols import ConsumerClient

if TYPE_CHECKING:
    from confluent_kafka import TopicPartition


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


def offsets_at(consumer: ConsumerClient, topic: str, when: datetime | None,
               timeout: float = 10.0) -> list[TopicPartition]:
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
            raise OffsetLookupError(f"could not find the offsets of {when.isoformat()} on {topic}: {partition.error}")
        if partition.offset < 0:
            _low, high = consumer.get_watermark_offsets(partition, timeout=timeout)
            partition.offset = high
    return list(found)
