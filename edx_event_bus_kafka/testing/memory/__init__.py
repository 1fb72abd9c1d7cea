"""An in-memory Kafka for fast tests: the event bus's clients, without a broker (public API).

:class:`InMemoryKafka` is one broker's worth of state in the test process: topics with partitions
(keyed messages land where librdkafka's default ``consistent_random`` partitioner puts them),
offsets, consumer groups with commits and rebalance callbacks, pausing, resuming and seeking
partitions, headers, keys and timestamps, delivery reports through ``poll``/``flush``, and the
errors a test wants to see (a failed produce, a failed delivery, a poll error, a client error,
fatal ones included, a broker that refuses our credentials, an outage). Its clients implement the
same Protocols as confluent-kafka's (``edx_event_bus_kafka.internal.kafka.protocols``), so the
event bus runs on it unchanged.

Inside ``with InMemoryKafka() as kafka:`` every client the package makes is an in-memory one
(the process's producer is dropped on the way in and out, so it is rebuilt on them); the
``memory_kafka`` pytest fixture does that for one test and also points
``EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS`` at it. Example::

    def test_enrollment_is_published(memory_kafka):
        enroll(user, course)  # service code: COURSE_ENROLLMENT_CHANGED.send_event(...)
        create_producer().prepare_for_shutdown()  # wait for the delivery reports
        (message,) = memory_kafka.messages("learning-course-enrollment")
        assert dict(message.headers())["ce_type"] == COURSE_ENROLLMENT_CHANGED.event_type.encode()

Differences from a real cluster, on purpose: one broker; nothing is ever deleted (retention is
not applied, the low watermark is always 0); a reachable broker acknowledges a message as soon as
it is produced, so nothing is ever "in flight"; rebalances happen at the members' next poll
instead of after timeouts (a member that stops polling keeps its partitions until it is
:meth:`expired <InMemoryKafka.expire>` or closed); offsets are only committed when asked; no
transactions, quotas, compaction, ACLs or SASL, and librdkafka options other than those named in
the client classes are accepted and ignored.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Self

from confluent_kafka import KafkaError

from edx_event_bus_kafka.internal.kafka.clients import clients_from
from edx_event_bus_kafka.internal.kafka.protocols import Headers

from .admin import MemoryAdmin
from .cluster import ClientKind, ClusterState, Fault, MemoryClient
from .consumer import MemoryConsumer
from .producer import MemoryProducer
from .storage import HOST, PORT, MemoryMessage, as_bytes, header_pairs, partitioner

__all__ = ["InMemoryKafka", "MemoryAdmin", "MemoryConsumer", "MemoryMessage", "MemoryProducer"]


class InMemoryKafka(ClusterState):
    """A single in-memory Kafka broker, and the factory of clients connected to it.

    ``default_partitions`` is the partition count of auto-created topics (a topic is created when
    first produced to, as ``auto.create.topics.enable`` does; ``auto_create_topics=False`` turns
    that off, and producing to a missing topic then fails its delivery report).
    """

    #: What to put in ``EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS`` (any value works: clients ignore it here).
    bootstrap_servers = f"{HOST}:{PORT}"

    def __init__(self, *, default_partitions: int = 1, auto_create_topics: bool = True):
        super().__init__(default_partitions=default_partitions, auto_create_topics=auto_create_topics)
        self._routing: contextlib.ExitStack | None = None

    # -- the client factory --------------------------------------------------------------------

    def producer(self, config: dict[str, Any]) -> MemoryProducer:
        """A producer connected to this broker."""
        return MemoryProducer(self, config)

    def consumer(self, config: dict[str, Any]) -> MemoryConsumer:
        """A consumer connected to this broker (``group.id`` required)."""
        return MemoryConsumer(self, config)

    def admin(self, config: dict[str, Any]) -> MemoryAdmin:
        """An admin client connected to this broker."""
        return MemoryAdmin(self, config)

    def __enter__(self) -> Self:
        """Route every client the package makes to this broker until the block ends."""
        routing = contextlib.ExitStack()
        routing.enter_context(clients_from(self))
        routing.callback(_forget_producers)
        _forget_producers()
        self._routing = routing
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._routing is not None:
            self._routing.close()
            self._routing = None

    # -- topics and messages -------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
        """Create a topic with its final partition count (an existing one is left as it is)."""
        with self.lock:
            self.create(name, partitions, config)

    def topic_names(self) -> list[str]:
        """The topics that exist, sorted."""
        with self.lock:
            return sorted(self.topics)

    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has (KeyError if it does not exist)."""
        with self.lock:
            return len(self.topics[topic].partitions)

    def topic_config(self, topic: str) -> dict[str, str]:
        """The configuration ``topic`` was created with."""
        with self.lock:
            return dict(self.topics[topic].config)

    def messages(self, topic: str, partition: int | None = None) -> list[MemoryMessage]:
        """The messages stored in ``topic`` (or one partition), by partition then offset; [] if no such topic."""
        with self.lock:
            stored = self.topics.get(topic)
            if stored is None:
                return []
            numbers = range(len(stored.partitions)) if partition is None else [partition]
            return [message for number in numbers for message in stored.partitions[number]]

    def all_messages(self) -> list[MemoryMessage]:
        """Every message stored, in every topic, in the order the broker took them."""
        with self.lock:
            return list(self.log)

    def send(self, topic: str, value: str | bytes | None, *, key: str | bytes | None = None,
             headers: Headers | None = None, partition: int | None = None,
             timestamp_ms: int | None = None) -> MemoryMessage:
        """Store a message directly, as any other producer of the topic would (no delivery report).

        The partition is ``partition``, or the one librdkafka's default partitioner picks for ``key``.
        """
        key_bytes = as_bytes(key)
        with self.lock:
            stored = self.topic_for_produce(topic)
            if stored is None:
                raise KeyError(f"no topic {topic!r} (and topics are not auto-created)")
            number = partition if partition is not None else partitioner("consistent_random")(
                key_bytes, len(stored.partitions))
            return self.append(topic, number, key_bytes, as_bytes(value), headers=header_pairs(headers),
                               timestamp_ms=timestamp_ms)

    # -- groups --------------------------------------------------------------------------------

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The offsets ``group`` committed on ``topic``, by partition (partitions never committed are absent)."""
        with self.lock:
            return {number: offset for (name, number), offset in self.committed_offsets(group).items()
                    if name == topic}

    def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """Every offset ``group`` committed, by (topic, partition)."""
        with self.lock:
            return dict(self.offsets.get(group, {}))

    def commit(self, group: str, topic: str, partition: int, offset: int, metadata: str | None = None) -> None:
        """Set ``group``'s committed offset (and its commit metadata), as a consumer of that group would commit it."""
        with self.lock:
            self.store_commit(group, topic, partition, offset, metadata)

    def commit_metadata_of(self, group: str, topic: str) -> dict[int, str]:
        """The metadata of ``group``'s commits on ``topic``, by partition (commits without metadata are absent)."""
        with self.lock:
            return {number: metadata for (name, number), metadata in self.commit_metadata.get(group, {}).items()
                    if name == topic}

    def assignment(self, consumer: MemoryConsumer) -> list[tuple[str, int]]:
        """The partitions ``consumer`` owns now, sorted."""
        with self.lock:
            return sorted(consumer._owned)

    def expire(self, consumer: MemoryConsumer) -> None:
        """End ``consumer``'s group session, as a broker does when heartbeats stop: see ``MemoryConsumer.expire``."""
        consumer.expire()

    # -- faults --------------------------------------------------------------------------------

    def fail_next_produce(self, error: KafkaError | BaseException, *, topic: str | None = None,
                          times: int | None = 1) -> None:
        """The next ``times`` (None: all) ``produce`` calls (to ``topic``) raise.

        They raise a ``KafkaException`` of ``error``, or ``error`` itself when it is an exception
        (``BufferError()``: a full local queue).
        """
        self.add_fault(Fault("produce", error, topic=topic, times=times))

    def fail_next_delivery(self, error: KafkaError, *, topic: str | None = None, times: int | None = 1) -> None:
        """The next ``times`` messages produced (to ``topic``) are not stored; their delivery reports carry ``error``.

        ``times=None``: every message from now on.
        """
        self.add_fault(Fault("delivery", error, topic=topic, times=times))

    def fail_next_poll(self, error: KafkaError, *, group: str | None = None, times: int | None = 1) -> None:
        """The next ``times`` polls (of consumers of ``group``) return an error event with ``error``."""
        self.add_fault(Fault("poll", error, group=group, times=times))

    def deny_topic(self, topic: str, error: KafkaError) -> None:
        """Refuse to create ``topic`` with ``error`` (say ``TOPIC_AUTHORIZATION_FAILED``, as without a CREATE ACL)."""
        with self.lock:
            self.denied_topics[topic] = error

    def raise_client_error(self, error: KafkaError, *, kind: ClientKind | None = None,
                           group: str | None = None) -> list[MemoryClient]:
        """Send a client-level error to every live client (of ``kind``, of ``group``), at its next poll.

        Clients pass it to their ``error_cb``. A fatal error (``KafkaError(..., fatal=True)``) also
        breaks the client for good, as librdkafka's fatal errors do: a producer fails what it holds
        and every later ``produce``; a consumer returns nothing but the fatal error. Returns the
        clients reached.
        """
        reached = self.clients_of(kind, group)
        for client in reached:
            client.raise_error(error)
        return reached

    def refuse_connections(self, error: KafkaError | None = None) -> None:
        """Act as a broker refusing our credentials: every poll of every client meets ``error``.

        The default is an authentication failure. Nothing is delivered or fetched, metadata
        requests fail at once, until :meth:`accept_connections`.
        """
        with self.lock:
            self.refusal = error or KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: "
                                                                           "Authentication failed (in-memory)")
            self.lock.notify_all()

    def accept_connections(self) -> None:
        """Stop refusing (see :meth:`refuse_connections`)."""
        with self.lock:
            self.refusal = None
            self.lock.notify_all()

    def go_down(self) -> None:
        """An outage, until :meth:`come_back`.

        Clients hear ``_ALL_BROKERS_DOWN``; produced messages wait (until ``message.timeout.ms``),
        consumers get nothing, metadata requests wait out their timeout and fail.
        """
        with self.lock:
            self.down = True
            for client in self.clients:
                client._errors.append(KafkaError(KafkaError._ALL_BROKERS_DOWN))
            self.lock.notify_all()

    def come_back(self) -> None:
        """End an outage: waiting messages are delivered at their producer's next poll."""
        with self.lock:
            self.down = False
            self.lock.notify_all()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The broker is down within the block."""
        self.go_down()
        try:
            yield
        finally:
            self.come_back()

    # -- clients -------------------------------------------------------------------------------

    @property
    def producers(self) -> list[MemoryProducer]:
        """Every producer made so far, oldest first."""
        return [client for client in self.clients_of("producer") if isinstance(client, MemoryProducer)]

    @property
    def consumers(self) -> list[MemoryConsumer]:
        """Every consumer not yet closed, oldest first."""
        return [client for client in self.clients_of("consumer") if isinstance(client, MemoryConsumer)]


def _forget_producers() -> None:
    """Drop the process's producer (and openedx-events' handle on it), so the next one is built afresh."""
    from openedx_events.event_bus import get_producer

    from edx_event_bus_kafka.internal.produce.producer import forget_producer

    forget_producer()
    get_producer.cache_clear()
