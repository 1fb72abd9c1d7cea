"""What the in-memory Kafka stores: topics of partitions of messages, and how keys pick partitions."""
from __future__ import annotations

import random
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata

from edx_event_bus_kafka.internal.kafka.protocols import HeaderList, Headers

#: Kafka's rule for topic names (brokers refuse others).
LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
#: ``timestamp()[0]`` of a message whose time was set by its producer (librdkafka's TIMESTAMP_CREATE_TIME).
CREATE_TIME = 1
BROKER_ID = 0
HOST, PORT = "in-memory", 9092


def legal_topic(name: str) -> bool:
    """Whether Kafka accepts ``name`` as a topic name."""
    return bool(LEGAL_TOPIC.fullmatch(name)) and name not in {".", ".."}


class MemoryMessage:
    """A stored message, a delivery report's message or an error event, shaped like confluent-kafka's ``Message``."""

    __slots__ = ("_error", "_headers", "_key", "_offset", "_partition", "_timestamp", "_topic", "_value")

    def __init__(self, topic: str | None = None, partition: int | None = None, offset: int | None = None, *,
                 key: bytes | None = None, value: bytes | None = None, headers: HeaderList | None = None,
                 timestamp: tuple[int, int] = (0, 0), error: KafkaError | None = None):
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._headers = key, value, headers
        self._timestamp, self._error = timestamp, error

    def topic(self) -> str | None:
        """The topic."""
        return self._topic

    def partition(self) -> int | None:
        """The partition."""
        return self._partition

    def offset(self) -> int | None:
        """The offset in the partition (``None`` before delivery)."""
        return self._offset

    def key(self) -> bytes | None:
        """The key."""
        return self._key

    def value(self) -> bytes | None:
        """The value (``None``: a null value)."""
        return self._value

    def headers(self) -> HeaderList | None:
        """A copy of the headers in order, or ``None`` when the message has none (as librdkafka gives them)."""
        return list(self._headers) if self._headers else None

    def timestamp(self) -> tuple[int, int]:
        """``(type, milliseconds)``."""
        return self._timestamp

    def error(self) -> KafkaError | None:
        """The error of an error event or a failed delivery."""
        return self._error

    def latency(self) -> float | None:
        """Not measured here."""
        return None

    def __len__(self) -> int:
        return len(self._value or b"")

    def __repr__(self) -> str:
        if self._error is not None:
            return f"MemoryMessage(error={self._error})"
        return f"MemoryMessage({self._topic}[{self._partition}]@{self._offset})"


class FailedPartition(TopicPartition):
    """A ``TopicPartition`` whose ``error`` is set, as librdkafka answers a request that failed on one partition.

    (confluent-kafka's ``error`` is read-only from Python: only its C code fills it in.)
    """

    def __init__(self, topic: str, partition: int, offset: int, error: KafkaError):
        super().__init__(topic, partition, offset)
        self._error = error

    @property
    def error(self) -> KafkaError:  # type: ignore[override]  # a read-only attribute, read the same way
        """Why the request failed on this partition."""
        return self._error


def as_bytes(data: str | bytes | None) -> bytes | None:
    """Keys, values and header values as librdkafka stores them: text becomes UTF-8."""
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


def header_pairs(headers: Headers | None) -> HeaderList | None:
    """Headers as stored: pairs in order, values as bytes (or ``None``)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, dict) else headers
    return [(str(name), as_bytes(value)) for name, value in pairs]


def message_size(key: bytes | None, value: bytes | None, headers: HeaderList | None) -> int:
    """What counts against ``message.max.bytes``."""
    header_bytes = sum(len(name) + len(value or b"") for name, value in headers or ())
    return len(key or b"") + len(value or b"") + header_bytes


def now_ms() -> int:
    """The wall clock in milliseconds, as producers stamp messages."""
    return int(time.time() * 1000)


# -- partitioners ------------------------------------------------------------------------------
# The built-in partitioners of librdkafka (its ``partitioner`` option), to place keyed messages on
# the same partitions as a real producer does. ``consistent_random`` is librdkafka's default:
# CRC32 of the key modulo the partition count, a random partition for an empty or null key.

_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of Kafka's Java client (as librdkafka's ``murmur2`` partitioners use it)."""
    seed, multiplier = 0x9747B28C, 0x5BD1E995
    length = len(data)
    hashed = (seed ^ length) & _MASK
    whole = length - length % 4
    for start in range(0, whole, 4):
        word = int.from_bytes(data[start:start + 4], "little")
        word = (word * multiplier) & _MASK
        word ^= word >> 24
        word = (word * multiplier) & _MASK
        hashed = ((hashed * multiplier) & _MASK) ^ word
    tail = data[whole:]
    if tail:
        for index in reversed(range(len(tail))):
            hashed ^= tail[index] << (8 * index)
        hashed = (hashed * multiplier) & _MASK
    hashed ^= hashed >> 13
    hashed = (hashed * multiplier) & _MASK
    hashed ^= hashed >> 15
    return hashed


def fnv1a(data: bytes) -> int:
    """The 32-bit FNV-1a hash as librdkafka's ``fnv1a`` partitioners use it: read as signed, then its magnitude."""
    hashed = 0x811C9DC5
    for byte in data:
        hashed = ((hashed ^ byte) * 0x01000193) & _MASK
    return abs(hashed - (1 << 32)) if hashed & 0x80000000 else hashed


Partitioner = Callable[[bytes | None, int], int]


def _hashing(hash_key: Callable[[bytes], int], *, random_when_keyless: bool, empty_is_keyless: bool) -> Partitioner:
    def choose(key: bytes | None, count: int) -> int:
        keyless = key is None or (empty_is_keyless and key == b"")
        if keyless and random_when_keyless:
            return random.randrange(count)  # spreading keyless messages, not security
        return hash_key(key or b"") % count

    return choose


PARTITIONERS: dict[str, Partitioner] = {
    "random": lambda _key, count: random.randrange(count),
    "consistent": _hashing(zlib.crc32, random_when_keyless=False, empty_is_keyless=True),
    "consistent_random": _hashing(zlib.crc32, random_when_keyless=True, empty_is_keyless=True),
    "murmur2": _hashing(lambda data: murmur2(data) & 0x7FFFFFFF, random_when_keyless=False, empty_is_keyless=False),
    "murmur2_random": _hashing(lambda data: murmur2(data) & 0x7FFFFFFF, random_when_keyless=True,
                               empty_is_keyless=False),
    "fnv1a": _hashing(fnv1a, random_when_keyless=False, empty_is_keyless=False),
    "fnv1a_random": _hashing(fnv1a, random_when_keyless=True, empty_is_keyless=False),
}


def partitioner(name: str) -> Partitioner:
    """The partitioner librdkafka's ``partitioner`` option names.

    Raises:
        ValueError: not one of librdkafka's built-in partitioners.

    """
    try:
        return PARTITIONERS[name]
    except KeyError:
        raise ValueError(f"partitioner={name!r} is not one of librdkafka's: {', '.join(PARTITIONERS)}") from None


# -- topics --------------------------------------------------------------------------------------


@dataclass
class StoredTopic:
    """A topic: its partitions' messages (offset = index: nothing is ever deleted) and its configuration."""

    name: str
    partitions: list[list[MemoryMessage]]
    config: dict[str, str] = field(default_factory=dict)

    def append(self, partition: int, key: bytes | None, value: bytes | None, headers: HeaderList | None,
               timestamp_ms: int) -> MemoryMessage:
        """Store one message at the end of ``partition``; the stored message."""
        log = self.partitions[partition]
        message = MemoryMessage(self.name, partition, len(log), key=key, value=value, headers=headers,
                                timestamp=(CREATE_TIME, timestamp_ms))
        log.append(message)
        return message

    def metadata(self) -> TopicMetadata:
        """The topic as a metadata request describes it: one broker leads every partition."""
        found = TopicMetadata()
        found.topic = self.name
        for number in range(len(self.partitions)):
            partition = PartitionMetadata()
            partition.id, partition.leader = number, BROKER_ID
            partition.replicas, partition.isrs = [BROKER_ID], [BROKER_ID]
            found.partitions[number] = partition
        return found


def unknown_topic_metadata(name: str) -> TopicMetadata:
    """What a metadata request says of a topic that does not exist."""
    found = TopicMetadata()
    found.topic = name
    found.error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    return found


def cluster_metadata(topics: dict[str, StoredTopic], only: str | None) -> ClusterMetadata:
    """Metadata of every topic, or of ``only`` (with an error when it does not exist)."""
    metadata: Any = ClusterMetadata()  # Any: the class declares its attributes as None
    metadata.cluster_id, metadata.controller_id = "in-memory-kafka", BROKER_ID
    broker: Any = BrokerMetadata()
    broker.id, broker.host, broker.port = BROKER_ID, HOST, PORT
    metadata.brokers = {BROKER_ID: broker}
    names = sorted(topics) if only is None else [only]
    metadata.topics = {name: topics[name].metadata() if name in topics else unknown_topic_metadata(name)
                       for name in names}
    found: ClusterMetadata = metadata
    return found


def config_int(config: dict[str, Any], name: str, default: int) -> int:
    """A numeric librdkafka option (options may be given as text)."""
    return int(config.get(name, default))
