"""What a consumer group has left to do (``./manage.py event_bus_status``).

Per-partition lag, the time of the oldest unconsumed message, the group's dead letters, the
outbox backlog and the group's inbox (deduplication).

Reads only: it never joins the group (committed offsets are fetched, not changed) and uses its own
throw-away group to peek at the oldest unconsumed message of each lagging partition.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from edx_event_bus_kafka.internal.dead_letters.writer import dead_letter_topic
from edx_event_bus_kafka.internal.errors import UnknownTopicError
from edx_event_bus_kafka.internal.kafka.clients import new_consumer
from edx_event_bus_kafka.internal.kafka.protocols import ConsumerClient
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch, list_topics_watched
from edx_event_bus_kafka.internal.settings.clients import consumer_client_config, get_full_topic
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, get_settings

TIMEOUT_SEC = 10.0


@dataclass
class PartitionStatus:
    """One partition as the group sees it."""

    partition: int
    committed: int | None  # None: the group has never committed here
    end: int
    lag: int
    oldest_unconsumed: str | None  # ISO time of the next message the group will read, if any


@dataclass
class TopicStatus:
    """A topic and group's backlog, dead letters and the outbox backlog of this service."""

    topic: str
    group: str
    partitions: list[PartitionStatus] = field(default_factory=list)
    dead_letter_topic: str = ""
    dead_letters: int | None = None  # None: no dead-letter topic yet
    outbox: dict[str, Any] | None = None
    outbox_error: str | None = None
    inbox: dict[str, Any] | None = None
    inbox_error: str | None = None

    @property
    def total_lag(self) -> int:
        """Messages not yet consumed by the group, over all partitions."""
        return sum(p.lag for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return {**asdict(self), "total_lag": self.total_lag}


def _client(group: str, settings: EventBusSettings, watch: RefusalWatch) -> ConsumerClient:
    config = consumer_client_config(group, settings)
    config["log_level"] = 3
    return new_consumer(config, error_cb=watch.seen)


def _message_time(consumer: ConsumerClient, topic: str, partition: int, offset: int, timeout: float) -> str | None:
    from confluent_kafka import TopicPartition

    consumer.assign([TopicPartition(topic, partition, offset)])
    messages = consumer.consume(num_messages=1, timeout=timeout)
    for message in messages:
        if message.error() is None:
            timestamp_type, stamp_ms = message.timestamp()
            if timestamp_type:
                return datetime.fromtimestamp(stamp_ms / 1000, tz=UTC).isoformat()
    return None


def _partitions(consumer: ConsumerClient, topic: str, watch: RefusalWatch, timeout: float) -> list[int] | None:
    metadata = list_topics_watched(consumer, watch, timeout, topic)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return None
    return sorted(found.partitions)


def topic_status(topic: str, group: str, settings: EventBusSettings | None = None, *,
                 include_outbox: bool = True, timeout: float = TIMEOUT_SEC) -> TopicStatus:
    """The status of ``topic`` (without prefix) for consumer group ``group``; each broker request waits ``timeout`` s.

    Raises:
        UnknownTopicError: the topic does not exist.
        BrokerRefusedError: the broker refused our credentials or TLS setup.

    """
    from confluent_kafka import TopicPartition

    settings = settings or get_settings()
    full_topic = get_full_topic(topic, settings)
    status = TopicStatus(topic=full_topic, group=group)
    watch = RefusalWatch("status reader")
    reader = _client(group, settings, watch)
    peeker = _client(f"event-bus-status-{uuid.uuid4().hex[:8]}", settings, watch)
    try:
        numbers = _partitions(reader, full_topic, watch, timeout)
        if numbers is None:
            raise UnknownTopicError(f"topic {full_topic!r} does not exist")
        committed = {
            tp.partition: tp.offset
            for tp in reader.committed([TopicPartition(full_topic, n) for n in numbers], timeout=timeout)
        }
        for number in numbers:
            low, high = reader.get_watermark_offsets(TopicPartition(full_topic, number), timeout=timeout)
            done = committed.get(number)
            position = done if done is not None and done >= 0 else low
            lag = max(0, high - position)
            oldest = _message_time(peeker, full_topic, number, position, timeout) if lag else None
            status.partitions.append(PartitionStatus(number, done if done is not None and done >= 0 else None,
                                                     high, lag, oldest))
        status.dead_letter_topic = dead_letter_topic(full_topic, group, settings)
        dead_numbers = _partitions(reader, status.dead_letter_topic, watch, timeout)
        if dead_numbers is not None:
            status.dead_letters = 0
            for number in dead_numbers:
                low, high = reader.get_watermark_offsets(TopicPartition(status.dead_letter_topic, number),
                                                         timeout=timeout)
                status.dead_letters += max(0, high - low)
    finally:
        reader.close()
        peeker.close()
    if include_outbox:
        _add_outbox(status, settings)
        _add_inbox(status, group, settings)
    return status


def _add_outbox(status: TopicStatus, settings: EventBusSettings) -> None:
    from django.db import DatabaseError

    from edx_event_bus_kafka.internal.outbox.publisher import backlog

    try:
        status.outbox = backlog(settings)
    except DatabaseError as error:  # e.g. the migration was not run: say so, do not fail the report
        status.outbox_error = f"outbox table unavailable: {error}".splitlines()[0]


def _add_inbox(status: TopicStatus, group: str, settings: EventBusSettings) -> None:
    from django.db import DatabaseError

    from edx_event_bus_kafka.internal.inbox.store import inbox_status

    try:
        status.inbox = inbox_status(group, settings)
    except DatabaseError as error:  # e.g. the migration was not run: say so, do not fail the report
        status.inbox_error = f"inbox table unavailable: {error}".splitlines()[0]
