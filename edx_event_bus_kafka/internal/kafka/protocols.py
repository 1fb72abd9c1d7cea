"""The calls the event bus makes on Kafka clients, as typed Protocols.

confluent-kafka's ``Producer``, ``Consumer`` and ``AdminClient`` satisfy them, and so do the clients
of the in-memory Kafka (:mod:`edx_event_bus_kafka.testing.memory`). Only these calls are used; a
new call on a client starts by being added here, which keeps the in-memory Kafka honest.

The small value types of confluent-kafka (``KafkaError``, ``KafkaException``, ``TopicPartition``,
``NewTopic``, ``OffsetSpec``, the ``ClusterMetadata`` family and the consumer-group descriptions)
are shared by both implementations rather than abstracted: they are plain data, usable without a
broker.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, overload

if TYPE_CHECKING:
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition
    from confluent_kafka.admin import ClusterMetadata, NewTopic, OffsetSpec

#: Message headers as the clients take and give them: a list of (name, value) pairs, repeats allowed.
HeaderList: TypeAlias = "list[tuple[str, str | bytes | None]]"
#: What ``produce`` accepts as headers (a dict is turned into pairs).
Headers: TypeAlias = "HeaderList | dict[str, str | bytes | None]"


def header_list(headers: Headers | None) -> HeaderList:
    """``headers`` as (name, value) pairs: consumed messages carry pairs already, ``produce`` also takes a dict."""
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


class Message(Protocol):
    """A consumed message, a delivery report's message, or an error event (then ``error()`` is set)."""

    def topic(self) -> str | None:
        """The topic (``None`` for some error events)."""

    def partition(self) -> int | None:
        """The partition number."""

    def offset(self) -> int | None:
        """The offset in the partition."""

    def key(self) -> bytes | None:
        """The key bytes."""

    def value(self) -> bytes | None:
        """The value bytes; ``None`` for a null value."""

    def headers(self) -> Headers | None:
        """The headers in order (``None`` when there are none)."""

    def timestamp(self) -> tuple[int, int]:
        """``(timestamp type, milliseconds since the epoch)``; type 0 means "no timestamp"."""

    def error(self) -> KafkaError | None:
        """The error of an error event or failed delivery; ``None`` for a good message."""


#: ``on_delivery(error, message)``: called from ``poll``/``flush`` once per produced message.
DeliveryCallback: TypeAlias = "Callable[[KafkaError | None, Any], None]"
#: ``on_assign(consumer, partitions)`` and the like: called from ``poll``/``consume``/``close``.
RebalanceCallback: TypeAlias = "Callable[[Any, list[TopicPartition]], None]"
#: A client's ``error_cb``: client-level errors (not per message), served from ``poll``.
ErrorCallback: TypeAlias = "Callable[[KafkaError], object]"


class ProducerClient(Protocol):
    """What we call on a producer."""

    def produce(self, topic: str, value: str | bytes | None = None, key: str | bytes | None = None, *,
                partition: int = -1, on_delivery: DeliveryCallback | None = None, timestamp: int = 0,
                headers: Headers | None = None) -> None:
        """Queue one message; raises ``BufferError`` when the local queue is full, ``KafkaException`` when refused."""

    def poll(self, timeout: float = -1) -> int:
        """Serve delivery reports and error callbacks, waiting up to ``timeout`` s for one; how many were served."""

    def flush(self, timeout: float = -1) -> int:
        """Wait up to ``timeout`` s until every queued message is delivered or failed; how many are left."""

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        """Give up on queued (and in-flight) messages: their delivery reports fail at the next poll."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """Cluster metadata, of one topic or all (``recovery`` asks it to tell a stuck client from an outage)."""

    def __len__(self) -> int:
        """Messages queued or in flight, plus delivery reports not yet served."""


class ConsumerClient(Protocol):
    """What we call on a consumer."""

    def subscribe(self, topics: list[str], on_assign: RebalanceCallback | None = None,
                  on_revoke: RebalanceCallback | None = None, on_lost: RebalanceCallback | None = None) -> None:
        """Join the group for ``topics``; partitions come and go through the callbacks, from ``poll``."""

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read exactly these partitions from these offsets, outside any group's assignment."""

    def poll(self, timeout: float = -1) -> Message | None:
        """One message or error event, waiting up to ``timeout`` s; ``None`` if nothing came."""

    def consume(self, num_messages: int = 1, timeout: float = -1) -> Sequence[Message]:
        """Up to ``num_messages``, waiting until that many came or ``timeout`` s passed."""

    @overload
    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[True] = ...) -> None: ...

    @overload
    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[False]) -> list[TopicPartition]: ...

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        """The group's committed offsets (``OFFSET_INVALID`` where it never committed)."""

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The next offset this consumer will read per partition (``OFFSET_INVALID`` before the first fetch)."""

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads now (given by the group, or by ``assign``)."""

    def pause(self, partitions: list[TopicPartition]) -> None:
        """Fetch nothing more from ``partitions`` until they are resumed (messages already fetched still come)."""

    def resume(self, partitions: list[TopicPartition]) -> None:
        """Fetch from paused ``partitions`` again."""

    def seek(self, partition: TopicPartition) -> None:
        """Read ``partition`` from its ``offset`` next (the partition must be assigned)."""

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = -1,
                              cached: bool = False) -> tuple[int, int]:
        """``(low, high)``: the first offset still stored and the offset after the last one."""

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        """Per partition (``offset`` holding a time in ms): the first offset at or after it, -1 if none."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """Cluster metadata, of one topic or all."""

    def close(self) -> None:
        """Leave the group (revoking the assignment) and release the client."""


class AdminClientLike(Protocol):
    """What we call on an admin client."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """Cluster metadata, of one topic or all."""

    def create_topics(self, new_topics: list[NewTopic], **kwargs: Any) -> dict[str, Future[Any]]:
        """Ask for the topics to be created; one future per topic name, failing with a ``KafkaException``."""

    def poll(self, timeout: float = -1) -> int:
        """Serve error callbacks."""

    def list_offsets(self, topic_partition_offsets: dict[TopicPartition, OffsetSpec],
                     **kwargs: Any) -> dict[TopicPartition, Future[Any]]:
        """Per partition, the offset its ``OffsetSpec`` names (earliest, latest, a time): ``ListOffsetsResultInfo``."""

    def list_consumer_group_offsets(self, list_consumer_group_offsets_request: list[ConsumerGroupTopicPartitions],
                                    **kwargs: Any) -> dict[str, Future[Any]]:
        """A group's committed offsets and their metadata: one ``ConsumerGroupTopicPartitions`` future per group."""

    def alter_consumer_group_offsets(self, alter_consumer_group_offsets_request: list[ConsumerGroupTopicPartitions],
                                     **kwargs: Any) -> dict[str, Future[Any]]:
        """Commit offsets (with metadata) for a group without members; per-partition errors otherwise."""

    def describe_consumer_groups(self, group_ids: list[str], **kwargs: Any) -> dict[str, Future[Any]]:
        """State and members (with their assignments) of groups: one ``ConsumerGroupDescription`` future per group."""


class ClientFactory(Protocol):
    """Builds clients from librdkafka configurations (``error_cb`` and ``logger`` included)."""

    def producer(self, config: dict[str, Any]) -> ProducerClient:
        """A new producer."""

    def consumer(self, config: dict[str, Any]) -> ConsumerClient:
        """A new consumer (``group.id`` is required, as librdkafka requires it)."""

    def admin(self, config: dict[str, Any]) -> AdminClientLike:
        """A new admin client."""
