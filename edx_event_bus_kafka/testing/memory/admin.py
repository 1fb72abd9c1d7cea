"""The in-memory admin client: topics, offsets and consumer groups, as a single-broker cluster answers."""
from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    KafkaError,
    KafkaException,
    Node,
    TopicPartition,
)
from confluent_kafka.admin import (
    ClusterMetadata,
    ConsumerGroupDescription,
    ListOffsetsResultInfo,
    MemberAssignment,
    MemberDescription,
    NewTopic,
    OffsetSpec,
)

from .cluster import ClusterState, MemoryClient
from .storage import HOST, PORT, FailedPartition, cluster_metadata, legal_topic


class MemoryAdmin(MemoryClient):
    """Shaped like confluent-kafka's ``AdminClient``, for the calls of ``AdminClientLike``."""

    kind = "admin"

    def __init__(self, kafka: ClusterState, config: dict[str, Any]):
        super().__init__(kafka, config)
        kafka.register(self)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """Metadata of every topic, or of ``topic``, which this creates if topics are auto-created.

        An admin client asks for metadata as a producer does, and a broker with
        ``auto.create.topics.enable`` answers a request naming a missing topic by creating it.
        """
        self._wait_for_metadata(timeout)
        with self.kafka.lock:
            if topic is not None:
                self.kafka.topic_for_produce(topic)
            return cluster_metadata(self.kafka.topics, topic)

    def create_topics(self, new_topics: list[NewTopic], **kwargs: Any) -> dict[str, Future[Any]]:
        """Create the topics; each future fails with a ``KafkaException`` as the broker would refuse it.

        Partition count -1 means the broker's default; replication factor -1 or 1 is accepted (there
        is one broker), more is refused with ``INVALID_REPLICATION_FACTOR``. ``validate_only`` creates
        nothing.

        Raises:
            ValueError: no topics, as confluent-kafka raises it.

        """
        if not new_topics:
            raise ValueError("Expected non-empty list of NewTopic objects")
        futures: dict[str, Future[Any]] = {}
        with self.kafka.lock:
            for new in new_topics:
                future: Future[Any] = Future()
                refusal = self._refusal(new)
                if refusal is not None:
                    future.set_exception(KafkaException(refusal))
                else:
                    if not kwargs.get("validate_only"):
                        partitions = self.kafka.default_partitions if new.num_partitions == -1 else new.num_partitions
                        self.kafka.create(new.topic, partitions, dict(new.config or {}))
                    future.set_result(None)
                futures[new.topic] = future
        return futures

    def _refusal(self, new: NewTopic) -> KafkaError | None:  # noqa: PLR0911 -- one return per refusal reason
        kafka = self.kafka
        if kafka.down or kafka.refusal is not None:
            return KafkaError(KafkaError._TRANSPORT, "Failed to create topics: Local: Broker transport failure")
        injected = kafka.take_fault("create", topic=new.topic)
        if isinstance(injected, KafkaError):
            return injected
        if new.topic in kafka.denied_topics:
            return kafka.denied_topics[new.topic]
        if not legal_topic(new.topic):
            return KafkaError(KafkaError.TOPIC_EXCEPTION, f"Topic name {new.topic!r} is illegal")
        if new.topic in kafka.topics:
            return KafkaError(KafkaError.TOPIC_ALREADY_EXISTS, f"Topic '{new.topic}' already exists.")
        if new.num_partitions == 0 or new.num_partitions < -1:
            return KafkaError(KafkaError.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
        if new.replication_factor > 1:
            return KafkaError(KafkaError.INVALID_REPLICATION_FACTOR,
                              f"Replication factor: {new.replication_factor} larger than available brokers: 1.")
        return None

    # -- offsets and consumer groups -----------------------------------------------------------

    def list_offsets(self, topic_partition_offsets: dict[TopicPartition, OffsetSpec],
                     **_kwargs: Any) -> dict[TopicPartition, Future[Any]]:
        """Earliest (always 0 here: nothing is deleted), latest, or first at or after a time (-1 if none)."""
        futures: dict[TopicPartition, Future[Any]] = {}
        with self.kafka.lock:
            for tp, spec in topic_partition_offsets.items():
                future: Future[Any] = Future()
                futures[tp] = future
                stored = self.kafka.topics.get(tp.topic)
                problem = self._unreachable()
                if problem is None and (stored is None or not 0 <= tp.partition < len(stored.partitions)):
                    problem = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
                if problem is not None or stored is None:
                    future.set_exception(KafkaException(problem))
                    continue
                log = stored.partitions[tp.partition]
                if spec is OffsetSpec.earliest():
                    offset = 0
                elif spec is OffsetSpec.latest():
                    offset = len(log)
                else:
                    stamp = spec.timestamp  # type: ignore[attr-defined]  # a TimestampSpec
                    offset = next((m.offset() or 0 for m in log if m.timestamp()[1] >= stamp), -1)
                future.set_result(ListOffsetsResultInfo(offset, -1, -1))
        return futures

    def list_consumer_group_offsets(self, list_consumer_group_offsets_request: list[ConsumerGroupTopicPartitions],
                                    **_kwargs: Any) -> dict[str, Future[Any]]:
        """The committed offset and metadata of each requested partition (all the group's, when none are named)."""
        futures: dict[str, Future[Any]] = {}
        with self.kafka.lock:
            for request in list_consumer_group_offsets_request:
                future: Future[Any] = Future()
                futures[request.group_id] = future
                problem = self._unreachable()
                if problem is not None:
                    future.set_exception(KafkaException(problem))
                    continue
                wanted = [(tp.topic, tp.partition) for tp in request.topic_partitions or []] or sorted(
                    self.kafka.offsets.get(request.group_id, {}))
                found = [self.kafka.committed_position(request.group_id, topic, number) for topic, number in wanted]
                future.set_result(ConsumerGroupTopicPartitions(request.group_id, found))
        return futures

    def alter_consumer_group_offsets(self, alter_consumer_group_offsets_request: list[ConsumerGroupTopicPartitions],
                                     **_kwargs: Any) -> dict[str, Future[Any]]:
        """Commit the offsets (metadata included) for a group without members; ``UNKNOWN_MEMBER_ID`` otherwise."""
        futures: dict[str, Future[Any]] = {}
        with self.kafka.lock:
            for request in alter_consumer_group_offsets_request:
                future: Future[Any] = Future()
                futures[request.group_id] = future
                problem = self._unreachable()
                if problem is not None:
                    future.set_exception(KafkaException(problem))
                    continue
                busy = bool(self.kafka.members(request.group_id))  # a broker refuses commits from outside a live group
                answered: list[TopicPartition] = []
                for tp in request.topic_partitions or []:
                    if busy:
                        answered.append(FailedPartition(tp.topic, tp.partition, tp.offset,
                                                        KafkaError(KafkaError.UNKNOWN_MEMBER_ID)))
                    else:
                        self.kafka.store_commit(request.group_id, tp.topic, tp.partition, tp.offset, tp.metadata)
                        answered.append(TopicPartition(tp.topic, tp.partition, tp.offset))
                future.set_result(ConsumerGroupTopicPartitions(request.group_id, answered))
        return futures

    def describe_consumer_groups(self, group_ids: list[str], **_kwargs: Any) -> dict[str, Future[Any]]:
        """Each group's state (``STABLE`` with members, ``EMPTY`` without, ``DEAD`` if unknown) and members."""
        futures: dict[str, Future[Any]] = {}
        with self.kafka.lock:
            for group_id in group_ids:
                future: Future[Any] = Future()
                futures[group_id] = future
                problem = self._unreachable()
                if problem is not None:
                    future.set_exception(KafkaException(problem))
                    continue
                members = self.kafka.members(group_id)
                known = group_id in self.kafka.groups or group_id in self.kafka.offsets
                state = (ConsumerGroupState.STABLE if members else
                         ConsumerGroupState.EMPTY if known else ConsumerGroupState.DEAD)
                described = [MemberDescription(member.member_id, member.client_id, f"/{HOST}",
                                               MemberAssignment([TopicPartition(topic, number)
                                                                 for topic, number in sorted(member._owned)]))
                             for member in members]
                future.set_result(ConsumerGroupDescription(group_id, False, described, "range" if members else "",
                                                           state, Node(1, HOST, PORT), type=ConsumerGroupType.CLASSIC))
        return futures

    def _unreachable(self) -> KafkaError | None:
        """The error every request meets while the broker is down or refuses us (call with the lock held)."""
        if self.kafka.down or self.kafka.refusal is not None:
            return KafkaError(KafkaError._TRANSPORT, "Local: Broker transport failure")
        return None

    def poll(self, timeout: float = -1) -> int:
        """Serve error callbacks (waiting up to ``timeout`` s when there are none)."""
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while True:
            with self.kafka.lock:
                errors = self._take_errors()
                if not errors:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return 0
                    self.kafka.lock.wait(remaining)
                    continue
            self._serve_errors(errors)
            return len(errors)
