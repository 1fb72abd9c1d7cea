"""Dead letters as read back: the original message and why it was parked; choosing which to re-drive.

Reading joins no consumer group and commits nothing, so listing is safe while workers run.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from edx_event_bus_kafka.internal.dead_letters import writer as dead_letter
from edx_event_bus_kafka.internal.kafka.reader import READ_TIMEOUT_SEC, read_topic
from edx_event_bus_kafka.internal.settings.clients import get_full_topic
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, get_settings
from edx_event_bus_kafka.internal.wire.headers import HEADER_EVENT_TYPE, HEADER_ID, single_header

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


def read_dead_letters(topic: str, group_id: str, settings: EventBusSettings | None = None, *,
                      timeout: float = READ_TIMEOUT_SEC) -> list[DeadLetter]:
    """All dead letters of ``group_id`` for ``topic`` (without prefix), oldest first; [] when it has none.

    Raises:
        TopicReadError: the dead-letter topic could not be read to its end.

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
