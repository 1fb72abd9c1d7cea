"""Redrive: list a consumer group's dead letters and re-publish chosen ones to their original topic.

Reading joins no consumer group and commits nothing (the reader assigns itself every partition of
the dead-letter topic from the beginning), so listing is safe while workers run. A re-published copy
carries the ``REDRIVE_GROUP`` header: only the group that dead-lettered it processes it again, while
other groups, which already handled the original, skip it.
"""
from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import dead_letter
from .config import consumer_client_config, get_full_topic, producer_client_config
from .errors import EventBusKafkaError
from .headers import HEADER_EVENT_TYPE, HEADER_ID, single_header
from .settings import EventBusSettings, get_settings

logger = logging.getLogger(__name__)

#: A partition counts as read to its end only after its high watermark is reached AND no message
#: came for this long: some brokers (our embedded Tansu) report a watermark below the real end.
QUIET_SEC = 0.5
READ_TIMEOUT_SEC = 60.0
METADATA_TIMEOUT_SEC = 10.0
DELIVERY_TIMEOUT_SEC = 30.0

T = TypeVar("T")


class RedriveError(EventBusKafkaError):
    """Dead letters could not be read, or are not fit to be re-published."""


class RepublishError(RedriveError):
    """Some copies were not acknowledged by the broker; ``failures`` names each, the rest were delivered."""

    def __init__(self, message: str, failures: list[tuple[DeadLetter, str]], delivered: int):
        self.failures = failures
        self.delivered = delivered
        super().__init__(message)


class _Provenance(Generic[T]):
    """A provenance header read as a typed attribute of :class:`DeadLetter` (None if absent or malformed)."""

    def __init__(self, header: str, convert: Callable[[str], T]):
        self.key = header[len(dead_letter.PREFIX):]  # provenance() drops the common prefix
        self.convert = convert

    def __get__(self, letter: DeadLetter | None, owner: type | None = None) -> T | None:
        text = letter.provenance.get(self.key) if letter is not None else None
        try:
            return self.convert(text) if text is not None else None
        except ValueError:
            return None


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: the original message as it was consumed, and why it was parked."""

    partition: int  # in the dead-letter topic
    offset: int  # in the dead-letter topic
    key: bytes | None = field(repr=False)  # repr=False: keys and values may hold personal data
    value: bytes | None = field(repr=False)
    headers: list[tuple[str, bytes]]  # the original headers, provenance removed
    provenance: dict[str, str]

    original_topic = _Provenance(dead_letter.ORIGINAL_TOPIC, str)  # the full (prefixed) topic
    original_partition = _Provenance(dead_letter.ORIGINAL_PARTITION, int)
    original_offset = _Provenance(dead_letter.ORIGINAL_OFFSET, int)
    group = _Provenance(dead_letter.GROUP, str)  # the consumer group that gave up on it
    error_class = _Provenance(dead_letter.ERROR_CLASS, str)  # dotted name of the last exception
    error_message = _Provenance(dead_letter.ERROR_MESSAGE, str)  # truncated when written
    attempts = _Provenance(dead_letter.ATTEMPTS, int)
    time = _Provenance(dead_letter.TIME, str)  # when it was dead-lettered, ISO 8601 in UTC

    @classmethod
    def from_message(cls, message: Any) -> DeadLetter:
        """A dead letter from a message of a dead-letter topic."""
        headers = message.headers()
        return cls(
            partition=message.partition(), offset=message.offset(), key=message.key(), value=message.value(),
            headers=dead_letter.without_provenance(headers), provenance=dead_letter.provenance(headers),
        )

    @property
    def event_id(self) -> str | None:
        """The ``ce_id`` header (None when missing or repeated: such messages are dead letters too)."""
        return single_header(self.headers, HEADER_ID)

    @property
    def event_type(self) -> str | None:
        """The ``ce_type`` header."""
        return single_header(self.headers, HEADER_EVENT_TYPE)


def read_topic(full_topic: str, settings: EventBusSettings | None = None, *,
               timeout: float = READ_TIMEOUT_SEC) -> list[Any]:
    """Every message now in ``full_topic`` by partition and offset; [] when the topic does not exist.

    Raises:
        RedriveError: the brokers cannot be reached, or the topic was not read to its end in ``timeout`` s.

    """
    from confluent_kafka import Consumer

    deadline = time.monotonic() + timeout
    # librdkafka requires a group id even though assign() never joins the group nor commits.
    config = consumer_client_config(f"edx-event-bus-kafka-reader-{uuid.uuid4().hex}", settings or get_settings())
    config.update({"fetch.wait.max.ms": 10, "enable.partition.eof": False})
    consumer = Consumer(config)
    try:
        ends = _partition_ends(consumer, full_topic)
        if ends is None:
            return []
        messages = _read_to_end(consumer, full_topic, ends, deadline)
    finally:
        consumer.close()
    return sorted(messages, key=lambda message: (message.partition(), message.offset()))


def _partition_ends(consumer: Any, full_topic: str) -> dict[int, int] | None:
    """High watermark of every partition of ``full_topic`` (0 when empty); None if there is no such topic."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    try:
        metadata = consumer.list_topics(full_topic, timeout=METADATA_TIMEOUT_SEC).topics.get(full_topic)
        if metadata is None or (metadata.error and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return None
        if metadata.error is not None:
            raise RedriveError(f"cannot read topic {full_topic}: {metadata.error}")
        ends = {}
        for number in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(full_topic, number), timeout=METADATA_TIMEOUT_SEC)
            ends[number] = high if high > low else 0
        return ends
    except KafkaException as error:
        raise RedriveError(f"cannot reach the brokers to read topic {full_topic}: {error}") from error


def _read_to_end(consumer: Any, full_topic: str, ends: dict[int, int], deadline: float) -> list[Any]:
    """Read every partition from the beginning until each reached its end and nothing came for a while."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    assignment = [TopicPartition(full_topic, number, OFFSET_BEGINNING) for number in ends]
    consumer.assign(assignment)
    messages: list[Any] = []
    last_message = time.monotonic()
    while True:
        positions = {tp.partition: tp.offset for tp in consumer.position(assignment)}
        caught_up = all(positions[number] >= high for number, high in ends.items() if high > 0)
        if caught_up and time.monotonic() - last_message >= QUIET_SEC:
            return messages
        if time.monotonic() >= deadline:
            raise RedriveError(f"could not read topic {full_topic} to its end in time ({len(messages)} messages read)")
        batch = consumer.consume(num_messages=500, timeout=0.1)
        for message in batch:
            error = message.error()
            if error is None:
                messages.append(message)
            elif not error.retriable():
                raise RedriveError(f"error reading topic {full_topic}: {error}")
        if batch:
            last_message = time.monotonic()


def read_dead_letters(topic: str, group_id: str, settings: EventBusSettings | None = None, *,
                      timeout: float = READ_TIMEOUT_SEC) -> list[DeadLetter]:
    """All dead letters of ``group_id`` for ``topic`` (without prefix), oldest first; [] when it has none.

    Raises:
        RedriveError: the dead-letter topic could not be read to its end.

    """
    settings = settings or get_settings()
    full_topic = get_full_topic(topic, settings)
    letters_topic = dead_letter.dead_letter_topic(full_topic, group_id, settings)
    letters = [DeadLetter.from_message(message) for message in read_topic(letters_topic, settings, timeout=timeout)]
    # A custom EVENT_BUS_KAFKA_DEAD_LETTER_TOPIC without {group} is shared by groups: keep only ours.
    ours = [letter for letter in letters if letter.group == group_id and letter.original_topic == full_topic]
    if len(ours) < len(letters):
        logger.info("Ignored %d messages of %s from other groups or topics", len(letters) - len(ours), letters_topic)
    return sorted(ours, key=lambda letter: (letter.time or "", letter.partition, letter.offset))


def select(dead_letters: Iterable[DeadLetter], *, event_ids: Iterable[str] | None = None,
           partition: int | None = None, offset_range: tuple[int, int | None] | None = None) -> list[DeadLetter]:
    """The dead letters matching every selector given: event ids, original partition, original offsets.

    ``offset_range`` is inclusive ``(start, end)``; ``end`` None means no upper bound.
    """
    wanted = set(event_ids) if event_ids else None

    def matches(letter: DeadLetter) -> bool:
        if wanted is not None and letter.event_id not in wanted:
            return False
        if partition is not None and letter.original_partition != partition:
            return False
        if offset_range is not None:
            start, end = offset_range
            offset = letter.original_offset
            if offset is None or offset < start or (end is not None and offset > end):
                return False
        return True

    return [letter for letter in dead_letters if matches(letter)]


def latest_per_event(dead_letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """One dead letter per event id, the last one written, in input order.

    A redriven event that fails again is dead-lettered again, and redrive does not remove the old
    dead letter: re-publishing both would process the event twice.
    """
    letters = list(dead_letters)
    latest: dict[str, DeadLetter] = {}
    for letter in sorted(letters, key=lambda item: (item.time or "", item.partition, item.offset)):
        if letter.event_id is not None:
            latest[letter.event_id] = letter
    return [letter for letter in letters if letter.event_id is None or latest[letter.event_id] is letter]


def redrive(dead_letters: Sequence[DeadLetter], group_id: str, *, dry_run: bool = False,
            settings: EventBusSettings | None = None, timeout: float = DELIVERY_TIMEOUT_SEC) -> int:
    """Re-publish each dead letter to its original topic for ``group_id`` only; returns how many.

    Copies keep the original key, value and headers. Returns only once the broker acknowledged every
    copy, so the count is of delivered copies. ``dry_run`` checks the dead letters and sends nothing.

    Raises:
        RedriveError: a dead letter has no original topic (nothing is sent then).
        RepublishError: some copies were not acknowledged; the others were delivered.

    """
    unknown = [letter for letter in dead_letters if not letter.original_topic]
    if unknown:
        named = ", ".join(f"{letter.partition}:{letter.offset}" for letter in unknown)
        raise RedriveError(f"dead letter(s) at {named} do not name their original topic; nothing re-published")
    if dry_run or not dead_letters:
        return len(dead_letters)
    from confluent_kafka import KafkaException, Producer

    config = producer_client_config(settings or get_settings())
    # Whatever the pass-through options say: no copy lost, none doubled by the producer's own retries.
    config.update({"enable.idempotence": True, "acks": "all"})
    producer = Producer(config)
    outcomes: dict[int, str | None] = {}  # index -> None when acknowledged, else why not

    def on_delivery(index: int, error: Any, _message: Any) -> None:
        outcomes[index] = None if error is None else str(error)
        if error is None:
            letter = dead_letters[index]
            logger.info("Re-published dead letter %d:%d event_id=%s to %s for group %s", letter.partition,
                        letter.offset, letter.event_id, letter.original_topic, group_id)

    for index, letter in enumerate(dead_letters):
        headers: list[tuple[str, str | bytes | None]] = [
            *letter.headers, (dead_letter.REDRIVE_GROUP, group_id.encode("utf-8")),
        ]
        while True:
            try:
                producer.produce(str(letter.original_topic), key=letter.key, value=letter.value, headers=headers,
                                 on_delivery=functools.partial(on_delivery, index))
                break
            except BufferError:  # local queue full: serve delivery reports, then try again
                producer.poll(0.1)
            except KafkaException as error:
                outcomes[index] = str(error)
                break
    producer.flush(timeout)
    producer.purge(in_queue=True, in_flight=False)  # what was never sent will not be sent later
    producer.poll(0)
    unacknowledged = f"not acknowledged within {timeout} s (it may still arrive)"
    failures = [(letter, reason) for index, letter in enumerate(dead_letters)
                if (reason := outcomes.get(index, unacknowledged)) is not None]
    delivered = len(dead_letters) - len(failures)
    if failures:
        described = "; ".join(f"event {letter.event_id} (dead letter {letter.partition}:{letter.offset}): {reason}"
                              for letter, reason in failures)
        raise RepublishError(f"{len(failures)} of {len(dead_letters)} dead letters were not re-published "
                             f"({delivered} were): {described}", failures, delivered)
    return delivered
