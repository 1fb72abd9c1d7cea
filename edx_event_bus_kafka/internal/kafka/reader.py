"""Reading a whole topic as it is now, without joining a consumer group or committing anything.

The reader assigns itself every partition from the beginning and stops once each partition reached
the end it had when reading began; used to list dead letters while workers run.
"""
from __future__ import annotations

import time
import uuid

from edx_event_bus_kafka.internal.errors import TopicReadError
from edx_event_bus_kafka.internal.kafka.clients import new_consumer
from edx_event_bus_kafka.internal.kafka.protocols import ConsumerClient, Message
from edx_event_bus_kafka.internal.settings.clients import consumer_client_config
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, get_settings

#: A partition counts as read to its end only after its high watermark is reached AND no message
#: came for this long: some brokers (our embedded Tansu) report a watermark below the real end.
QUIET_SEC = 0.5
READ_TIMEOUT_SEC = 60.0
METADATA_TIMEOUT_SEC = 10.0


def read_topic(full_topic: str, settings: EventBusSettings | None = None, *,
               timeout: float = READ_TIMEOUT_SEC) -> list[Message]:
    """Every message now in ``full_topic`` by partition and offset; [] when the topic does not exist.

    Raises:
        TopicReadError: the brokers cannot be reached, or the topic was not read to its end in ``timeout`` s.

    """
    deadline = time.monotonic() + timeout
    # librdkafka requires a group id even though assign() never joins the group nor commits.
    config = consumer_client_config(f"edx-event-bus-kafka-reader-{uuid.uuid4().hex}", settings or get_settings())
    config.update({"fetch.wait.max.ms": 10, "enable.partition.eof": False})
    consumer = new_consumer(config)
    try:
        ends = _partition_ends(consumer, full_topic)
        if ends is None:
            return []
        messages = _read_to_end(consumer, full_topic, ends, deadline)
    finally:
        consumer.close()
    return sorted(messages, key=lambda message: (message.partition(), message.offset()))


def _partition_ends(consumer: ConsumerClient, full_topic: str) -> dict[int, int] | None:
    """High watermark of every partition of ``full_topic`` (0 when empty); None if there is no such topic."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    try:
        metadata = consumer.list_topics(full_topic, timeout=METADATA_TIMEOUT_SEC).topics.get(full_topic)
        if metadata is None or (metadata.error and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return None
        if metadata.error is not None:
            raise TopicReadError(f"cannot read topic {full_topic}: {metadata.error}")
        ends = {}
        for number in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(full_topic, number), timeout=METADATA_TIMEOUT_SEC)
            ends[number] = high if high > low else 0
        return ends
    except KafkaException as error:
        raise TopicReadError(f"cannot reach the brokers to read topic {full_topic}: {error}") from error


def _read_to_end(consumer: ConsumerClient, full_topic: str, ends: dict[int, int], deadline: float) -> list[Message]:
    """Read every partition from the beginning until each reached its end and nothing came for a while."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    assignment = [TopicPartition(full_topic, number, OFFSET_BEGINNING) for number in ends]
    consumer.assign(assignment)
    messages: list[Message] = []
    last_message = time.monotonic()
    while True:
        positions = {tp.partition: tp.offset for tp in consumer.position(assignment)}
        caught_up = all(positions[number] >= high for number, high in ends.items() if high > 0)
        if caught_up and time.monotonic() - last_message >= QUIET_SEC:
            return messages
        if time.monotonic() >= deadline:
            raise TopicReadError(f"could not read topic {full_topic} to its end in time "
                                 f"({len(messages)} messages read)")
        batch = consumer.consume(num_messages=500, timeout=0.1)
        for message in batch:
            error = message.error()
            if error is None:
                messages.append(message)
            elif not error.retriable():
                raise TopicReadError(f"error reading topic {full_topic}: {error}")
        if batch:
            last_message = time.monotonic()
