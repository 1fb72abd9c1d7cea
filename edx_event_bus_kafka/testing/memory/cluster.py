"""The in-memory Kafka itself: one broker's state, the faults a test injects, and what clients share."""
from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from .storage import MemoryMessage, StoredTopic, legal_topic, now_ms

if TYPE_CHECKING:
    from .consumer import MemoryConsumer

ClientKind = Literal["producer", "consumer", "admin"]
FaultKind = Literal["produce", "delivery", "poll", "create"]


@dataclass
class Fault:
    """An error a test asked for: raised or reported by the next ``times`` matching operations."""

    kind: FaultKind
    error: KafkaError | BaseException
    topic: str | None = None  # produce / delivery / create: only for this topic
    group: str | None = None  # poll: only for consumers of this group
    times: int | None = 1  # None: every time

    def matches(self, kind: FaultKind, topic: str | None, group: str | None) -> bool:
        """Whether an operation of ``kind`` on ``topic`` (by a consumer of ``group``) meets this fault."""
        return (self.kind == kind and (self.topic is None or self.topic == topic)
                and (self.group is None or self.group == group))


class MemoryClient:
    """What every in-memory client has: its configuration, its ``error_cb`` and the errors it has to serve."""

    kind: ClientKind

    def __init__(self, kafka: ClusterState, config: dict[str, Any]):
        self.kafka = kafka
        self.config = dict(config)
        self.error_cb: Callable[[KafkaError], object] | None = config.get("error_cb")
        self.fatal_error: KafkaError | None = None
        self._errors: deque[KafkaError] = deque()

    def raise_error(self, error: KafkaError) -> None:
        """Queue a client-level error for the next poll (a fatal one also breaks the client for good)."""
        with self.kafka.lock:
            self._errors.append(error)
            if error.fatal() and self.fatal_error is None:
                self.fatal_error = error
                self._became_fatal(error)
            self.kafka.lock.notify_all()

    def _became_fatal(self, error: KafkaError) -> None:
        """Clients that hold messages fail them here (called with the lock held)."""

    def _take_errors(self) -> list[KafkaError]:
        """The errors to hand to ``error_cb`` now (the broker's refusal is met again at every poll)."""
        errors = list(self._errors)
        self._errors.clear()
        refusal = self.kafka.refusal
        if refusal is not None:
            errors.append(refusal)
        return errors

    def _serve_errors(self, errors: list[KafkaError]) -> None:
        """Hand errors to ``error_cb``; call without the lock (the callback may call back)."""
        if self.error_cb is not None:
            for error in errors:
                self.error_cb(error)

    def _wait_for_metadata(self, timeout: float) -> None:
        """Before a metadata request: fail at once when refused, after ``timeout`` while the broker is down.

        Raises:
            KafkaException: no answer, as librdkafka raises it.

        """
        kafka = self.kafka
        if kafka.refusal is not None:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, f"Failed to get metadata: {kafka.refusal.str()}"))
        if kafka.down:
            deadline = None if timeout < 0 else time.monotonic() + timeout
            with kafka.lock:
                while kafka.down:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise KafkaException(KafkaError(KafkaError._TRANSPORT,
                                                        "Failed to get metadata: Local: Broker transport failure"))
                    kafka.lock.wait(remaining)


class ClusterState:
    """One broker's state: topics, committed offsets, groups, faults. Every change happens under ``lock``."""

    def __init__(self, *, default_partitions: int = 1, auto_create_topics: bool = True):
        self.lock = threading.Condition(threading.RLock())
        self.default_partitions = default_partitions
        self.auto_create_topics = auto_create_topics
        self.topics: dict[str, StoredTopic] = {}
        self.log: list[MemoryMessage] = []  # every stored message, in the order the broker took them
        self.offsets: dict[str, dict[tuple[str, int], int]] = {}  # group -> committed offsets
        self.commit_metadata: dict[str, dict[tuple[str, int], str]] = {}  # group -> metadata of those commits
        self.groups: dict[str, Any] = {}  # group id -> consumer.Group
        self.clients: list[MemoryClient] = []
        self.faults: list[Fault] = []
        self.denied_topics: dict[str, KafkaError] = {}
        self.down = False
        self.refusal: KafkaError | None = None

    # -- topics (call with the lock held) ------------------------------------------------------

    def create(self, name: str, partitions: int, config: dict[str, str] | None = None) -> StoredTopic:
        """Create ``name`` (or return it if it exists) and let subscribed groups rebalance."""
        found = self.topics.get(name)
        if found is not None:
            return found
        if not legal_topic(name):
            raise ValueError(f"{name!r} is not a legal Kafka topic name")
        found = self.topics[name] = StoredTopic(name, [[] for _ in range(partitions)], dict(config or {}))
        for group in self.groups.values():
            group.topic_created(name)
        self.lock.notify_all()
        return found

    def topic_for_produce(self, name: str) -> StoredTopic | None:
        """The topic a producer writes to, auto-created like a broker with ``auto.create.topics.enable``."""
        found = self.topics.get(name)
        if found is None and self.auto_create_topics and legal_topic(name):
            found = self.create(name, self.default_partitions)
        return found

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None, *,
               headers: Any, timestamp_ms: int | None) -> MemoryMessage:
        """Store a message and wake whoever waits for one."""
        stored = self.topics[topic].append(partition, key, value, headers, timestamp_ms or now_ms())
        self.log.append(stored)
        self.lock.notify_all()
        return stored

    # -- committed offsets (call with the lock held) -------------------------------------------

    def store_commit(self, group: str, topic: str, partition: int, offset: int, metadata: str | None) -> None:
        """Record ``group``'s committed offset and its metadata (a commit without metadata clears it, as Kafka does)."""
        self.offsets.setdefault(group, {})[(topic, partition)] = offset
        kept = self.commit_metadata.setdefault(group, {})
        if metadata:
            kept[(topic, partition)] = metadata
        else:
            kept.pop((topic, partition), None)

    def committed_position(self, group: str, topic: str, partition: int) -> TopicPartition:
        """``group``'s commit on a partition: offset (``OFFSET_INVALID`` if none) and metadata (None if none)."""
        offset = self.offsets.get(group, {}).get((topic, partition), OFFSET_INVALID)
        metadata = self.commit_metadata.get(group, {}).get((topic, partition))
        if metadata is None:
            return TopicPartition(topic, partition, offset)
        return TopicPartition(topic, partition, offset, metadata)

    # -- faults --------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Arm a fault."""
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, kind: FaultKind, *, topic: str | None = None,
                   group: str | None = None) -> KafkaError | BaseException | None:
        """The error of the first armed fault matching the operation, used up once (call with the lock held)."""
        for fault in self.faults:
            if fault.matches(kind, topic, group):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault.error
        return None

    # -- clients -------------------------------------------------------------------------------

    def register(self, client: MemoryClient) -> None:
        """Remember a new client; one created during an outage learns of it like the others did."""
        with self.lock:
            self.clients.append(client)
            if self.down:
                client._errors.append(KafkaError(KafkaError._ALL_BROKERS_DOWN))

    def clients_of(self, kind: ClientKind | None = None, group: str | None = None) -> list[MemoryClient]:
        """Live clients of ``kind`` (consumers of ``group``)."""
        with self.lock:
            return [client for client in self.clients
                    if (kind is None or client.kind == kind)
                    and (group is None or getattr(client, "group_id", None) == group)]

    def group(self, group_id: str) -> Any:
        """The consumer group ``group_id``, made on first use (call with the lock held)."""
        from .groups import Group

        found = self.groups.get(group_id)
        if found is None:
            found = self.groups[group_id] = Group(self, group_id)
        return found

    def members(self, group_id: str) -> list[MemoryConsumer]:
        """The consumers in the group now, in joining order."""
        with self.lock:
            group = self.groups.get(group_id)
            return list(group.members) if group is not None else []

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state still (for reading several things consistently)."""
        with self.lock:
            yield
