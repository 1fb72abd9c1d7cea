"""The in-memory consumer: group membership with rebalance callbacks, or manual assignment; fetching; offsets."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Literal, overload

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ClusterMetadata

from .cluster import ClusterState, MemoryClient
from .groups import Group, TopicPartitionKey
from .storage import FailedPartition, MemoryMessage, cluster_metadata

RebalanceCallback = Callable[[Any, list[TopicPartition]], None]
_EARLIEST = {"earliest", "smallest", "beginning"}
_LATEST = {"latest", "largest", "end"}


def _partitions(keys: set[TopicPartitionKey]) -> list[TopicPartition]:
    return [TopicPartition(topic, number) for topic, number in sorted(keys)]


class MemoryConsumer(MemoryClient):
    """Shaped like confluent-kafka's ``Consumer``, for the calls of ``ConsumerClient``.

    Honours ``group.id``, ``auto.offset.reset``, ``enable.partition.eof`` and the rebalance style:
    eager (``classic`` protocol with the default assignors: everything is revoked, then the new
    assignment given at once) or incremental (``group.protocol=consumer`` or a ``cooperative-sticky``
    assignment strategy: only what moves). Offsets are committed only when asked: automatic commits
    (``enable.auto.commit``) are refused at construction, the event bus never uses them.
    """

    kind = "consumer"

    def __init__(self, kafka: ClusterState, config: dict[str, Any]):
        super().__init__(kafka, config)
        if not config.get("group.id"):
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "group.id must be configured"))
        if str(config.get("enable.auto.commit", True)).lower() not in {"false", "0"}:
            raise ValueError("the in-memory Kafka does not commit automatically: set enable.auto.commit=False")
        self.group_id = str(config["group.id"])
        self.client_id = str(config.get("client.id", "rdkafka"))
        self.member_id = f"{self.client_id}-{uuid.uuid4()}"  # as the broker names a member (describe_consumer_groups)
        reset = str(config.get("auto.offset.reset", "latest")).lower()
        self.reset: Literal["earliest", "latest", "error"] = (
            "earliest" if reset in _EARLIEST else "latest" if reset in _LATEST else "error")
        self.partition_eof = str(config.get("enable.partition.eof", False)).lower() in {"true", "1"}
        strategy = str(config.get("partition.assignment.strategy", "range,roundrobin"))
        self.incremental = (str(config.get("group.protocol", "classic")) == "consumer"
                            or "cooperative" in strategy)
        self.subscription: list[str] = []
        self._callbacks: dict[str, RebalanceCallback | None] = {}
        self._member = False  # in the group (subscribed) as opposed to manually assigned
        self._generation = 0  # the group generation this member has fully taken in
        self._owned: set[TopicPartitionKey] = set()  # assigned partitions (by the group, or by assign())
        self._positions: dict[TopicPartitionKey, int | None] = {}  # None: not fetched yet
        self._starts: dict[TopicPartitionKey, int] = {}  # where assign()/seek() said to start (else: committed)
        self._paused: set[TopicPartitionKey] = set()
        self._at_eof: set[TopicPartitionKey] = set()
        self._lost = False
        self._closed = False
        self._next = 0  # round-robin start among partitions, so that none starves
        kafka.register(self)

    # -- group membership ----------------------------------------------------------------------

    def subscribe(self, topics: list[str], on_assign: RebalanceCallback | None = None,
                  on_revoke: RebalanceCallback | None = None, on_lost: RebalanceCallback | None = None) -> None:
        """Join the group for ``topics``; the assignment arrives through ``on_assign`` at a later poll."""
        self._check_open()
        with self.kafka.lock:
            self.subscription = list(topics)
            self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
            self._member = True
            self._group().join(self)

    def _group(self) -> Group:
        group: Group = self.kafka.group(self.group_id)
        return group

    def _rebalance(self) -> None:
        """Take in the group's latest assignment, running the callbacks as librdkafka does from poll."""
        if not self._member:
            return
        kafka = self.kafka
        with kafka.lock:
            group = self._group()
            if self._lost:
                lost, self._lost = set(self._owned), False
                self._drop(lost)
                group.join(self)
            else:
                lost = set()
            target = group.target_of(self)
            if self.incremental:
                revoked = self._owned - target
            else:
                revoked = set(self._owned) if self._generation != group.generation else set()
        if lost:
            self._call("lost" if self._callbacks.get("lost") else "revoke", lost)
        if revoked:
            self._call("revoke", revoked)
        with kafka.lock:
            self._drop(revoked)
            group.set_owned(self, self._owned)
            if self._generation == group.generation:
                return
            target = group.target_of(self)
            free = target - self._owned - group.owned_by_others(self)
            if not self.incremental and free != target - self._owned:
                return  # eager: the whole new assignment at once, when its old owners let go
            self._owned |= free
            self._positions.update(dict.fromkeys(free))
            group.set_owned(self, self._owned)
            if self._owned == target:
                self._generation = group.generation
        if free or not self.incremental:
            self._call("assign", free)

    def _call(self, which: str, keys: set[TopicPartitionKey]) -> None:
        callback = self._callbacks.get(which)
        if callback is not None:
            callback(self, _partitions(keys))

    def _drop(self, keys: set[TopicPartitionKey]) -> None:
        self._owned -= keys
        for key in keys:
            self._positions.pop(key, None)
            self._starts.pop(key, None)
            self._at_eof.discard(key)
            self._paused.discard(key)  # a partition assigned again starts unpaused

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read these partitions, from their offsets (``OFFSET_BEGINNING``, ``OFFSET_END``, stored, or a number)."""
        self._check_open()
        with self.kafka.lock:
            self._owned = {(tp.topic, tp.partition) for tp in partitions}
            self._positions = dict.fromkeys(self._owned)
            self._starts = {(tp.topic, tp.partition): tp.offset for tp in partitions}
            self._at_eof.clear()
            self._paused &= self._owned

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads now (offsets not set, as librdkafka gives them)."""
        with self.kafka.lock:
            return _partitions(self._owned)

    # -- fetching ------------------------------------------------------------------------------

    def poll(self, timeout: float = -1) -> MemoryMessage | None:
        """One message or error event, waiting up to ``timeout`` s (-1: for ever)."""
        found = self.consume(1, timeout)
        return found[0] if found else None

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[MemoryMessage]:
        """Up to ``num_messages``, returning early only once that many came (as librdkafka does)."""
        self._check_open()
        deadline = None if timeout < 0 else time.monotonic() + timeout
        found: list[MemoryMessage] = []
        while True:
            self._rebalance()
            with self.kafka.lock:
                errors = self._take_errors()
            if self.error_cb is None:
                found.extend(MemoryMessage(error=error) for error in errors)
            else:
                self._serve_errors(errors)
            with self.kafka.lock:
                found.extend(self._fetch(num_messages - len(found)))
                if len(found) >= num_messages:
                    return found
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return found
                self.kafka.lock.wait(remaining)

    def _fetch(self, wanted: int) -> list[MemoryMessage]:
        """Up to ``wanted`` messages from the assigned partitions, advancing positions (lock held)."""
        kafka = self.kafka
        if wanted <= 0:
            return []
        if self.fatal_error is not None:
            return [MemoryMessage(error=KafkaError(KafkaError._FATAL, self.fatal_error.str(), fatal=True))]
        injected = kafka.take_fault("poll", group=self.group_id)
        if isinstance(injected, KafkaError):
            return [MemoryMessage(error=injected)]
        if kafka.down or kafka.refusal is not None:
            return []
        keys = sorted(key for key in self._owned if key not in self._paused and key[0] in kafka.topics)
        found: list[MemoryMessage] = []
        for index in range(len(keys)):
            key = keys[(self._next + index) % len(keys)]
            found.extend(self._fetch_partition(key, wanted - len(found)))
            if len(found) >= wanted:
                break
        self._next += 1
        return found

    def _fetch_partition(self, key: TopicPartitionKey, wanted: int) -> list[MemoryMessage]:
        topic, number = key
        log = self.kafka.topics[topic].partitions[number]
        position = self._positions.get(key)
        if position is None:
            start = self._starts.pop(key, OFFSET_INVALID)
            if start == OFFSET_BEGINNING:
                start = 0
            elif start == OFFSET_END:
                start = len(log)
            elif start < 0:
                start = self.kafka.offsets.get(self.group_id, {}).get(key, -1)
            position = start if 0 <= start <= len(log) else None
            if position is None:
                if self.reset == "error":
                    self._positions[key] = len(log)
                    return [MemoryMessage(topic, number, error=KafkaError(KafkaError._AUTO_OFFSET_RESET))]
                position = 0 if self.reset == "earliest" else len(log)
        taken = log[position:position + wanted]
        self._positions[key] = position + len(taken)
        if taken:
            self._at_eof.discard(key)
        if self.partition_eof and len(taken) < wanted and key not in self._at_eof and position + len(taken) == len(log):
            self._at_eof.add(key)
            return [*taken, MemoryMessage(topic, number, len(log), error=KafkaError(KafkaError._PARTITION_EOF))]
        return list(taken)

    def seek(self, partition: TopicPartition) -> None:
        """Read ``partition`` from its ``offset`` next."""
        with self.kafka.lock:
            key = (partition.topic, partition.partition)
            self._positions[key] = None
            self._starts[key] = partition.offset
            self._at_eof.discard(key)

    def pause(self, partitions: list[TopicPartition]) -> None:
        """Fetch nothing more from ``partitions`` until resumed."""
        with self.kafka.lock:
            self._paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        """Fetch from ``partitions`` again."""
        with self.kafka.lock:
            self._paused -= {(tp.topic, tp.partition) for tp in partitions}
            self.kafka.lock.notify_all()

    # -- offsets -------------------------------------------------------------------------------

    @overload
    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[True] = ...) -> None: ...

    @overload
    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[False]) -> list[TopicPartition]: ...

    def commit(self, *, offsets: list[TopicPartition] | None = None, message: Any = None,
               asynchronous: bool = True) -> list[TopicPartition] | None:
        """Store the group's committed offsets (of ``offsets``, ``message`` + 1, or the current positions).

        Each offset's ``metadata`` is kept with it, as Kafka keeps commit metadata.

        Raises:
            KafkaException: nothing to commit, the broker is down, or this member was expired from the group.

        """
        self._check_open()
        with self.kafka.lock:
            if offsets is None and message is not None:
                offsets = [TopicPartition(message.topic(), message.partition(), message.offset() + 1)]
            if offsets is None:
                offsets = [TopicPartition(topic, number, position) for (topic, number), position
                           in sorted(self._positions.items()) if position is not None]
            problem = self._commit_problem(offsets)
            if problem is not None:
                if asynchronous:
                    return None  # librdkafka reports it to an offset_commit_cb, which we do not use
                raise KafkaException(problem)
            for tp in offsets:
                self.kafka.store_commit(self.group_id, tp.topic, tp.partition, tp.offset, tp.metadata)
        return None if asynchronous else [self.kafka.committed_position(self.group_id, tp.topic, tp.partition)
                                          for tp in offsets]

    def _commit_problem(self, offsets: list[TopicPartition]) -> KafkaError | None:
        if not offsets:
            return KafkaError(KafkaError._NO_OFFSET)
        if self.kafka.down or self.kafka.refusal is not None:
            return KafkaError(KafkaError._TRANSPORT)
        if self._lost:
            return KafkaError(KafkaError.UNKNOWN_MEMBER_ID)
        return None

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        """The group's committed offset and its metadata per partition (``OFFSET_INVALID`` where it never committed)."""
        self._check_open()
        self._wait_for_metadata(timeout)
        with self.kafka.lock:
            return [self.kafka.committed_position(self.group_id, tp.topic, tp.partition) for tp in partitions]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The next offset to read per partition (``OFFSET_INVALID`` before the first fetch)."""
        with self.kafka.lock:
            return [TopicPartition(tp.topic, tp.partition,
                                   _or_invalid(self._positions.get((tp.topic, tp.partition))))
                    for tp in partitions]

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = -1,
                              cached: bool = False) -> tuple[int, int]:
        """``(0, end)``: nothing is ever deleted here.

        Raises:
            KafkaException: the partition does not exist, or the broker does not answer.

        """
        self._check_open()
        self._wait_for_metadata(timeout)
        with self.kafka.lock:
            return 0, self._high(partition.topic, partition.partition)

    def _high(self, topic: str, number: int) -> int:
        stored = self.kafka.topics.get(topic)
        if stored is None or not 0 <= number < len(stored.partitions):
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION,
                                            "Failed to get watermark offsets: Local: Unknown partition"))
        return len(stored.partitions[number])

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        """Per partition: the first offset whose timestamp is at or after ``offset`` (ms); -1 if there is none."""
        self._check_open()
        self._wait_for_metadata(timeout)
        found: list[TopicPartition] = []
        with self.kafka.lock:
            for tp in partitions:
                stored = self.kafka.topics.get(tp.topic)
                if stored is None or not 0 <= tp.partition < len(stored.partitions):
                    found.append(FailedPartition(tp.topic, tp.partition, OFFSET_END,
                                                 KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)))
                    continue
                log = stored.partitions[tp.partition]
                offset = next((m.offset() or 0 for m in log if m.timestamp()[1] >= tp.offset), OFFSET_END)
                found.append(TopicPartition(tp.topic, tp.partition, offset))
        return found

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """Metadata of every topic, or of ``topic`` (with ``UNKNOWN_TOPIC_OR_PART`` when it does not exist)."""
        self._check_open()
        self._wait_for_metadata(timeout)
        with self.kafka.lock:
            return cluster_metadata(self.kafka.topics, topic)

    # -- the end -------------------------------------------------------------------------------

    def expire(self) -> None:
        """The broker gives up on this member (session timeout): its partitions go to others at once.

        The consumer hears of it at its next poll, through ``on_lost`` (or ``on_revoke`` without
        one), then joins the group again.
        """
        with self.kafka.lock:
            if self._member and not self._lost:
                self._group().leave(self)
                self._lost = True
                self._generation = 0

    def close(self) -> None:
        """Revoke the assignment (``on_revoke``) and leave the group."""
        if self._closed:
            return
        if self._member and self._owned and not self._lost:
            self._call("revoke", set(self._owned))
        with self.kafka.lock:
            if self._member:
                self._group().leave(self)
            self._owned.clear()
            self._closed = True
            self.kafka.clients.remove(self)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("Consumer closed")


def _or_invalid(position: int | None) -> int:
    return OFFSET_INVALID if position is None else position
