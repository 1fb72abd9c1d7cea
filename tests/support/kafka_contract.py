"""What the in-memory Kafka must do the way a real broker and librdkafka do it: one check per behaviour.

Each check takes a :class:`Side` (clients and topics of one Kafka) and asserts. The unit tier runs
every check on the in-memory Kafka (tests/unit/test_memory_kafka.py), the integration tier on the
real broker of the run (tests/integration/test_kafka_contract.py): a behaviour the fast tests rely
on is thereby also proved on Tansu and on Apache Kafka.
"""
from __future__ import annotations

import socket
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from edx_event_bus_kafka.internal.kafka.clients import CONFLUENT
from edx_event_bus_kafka.internal.kafka.protocols import ClientFactory, ConsumerClient, ProducerClient
from edx_event_bus_kafka.testing import KafkaTestBroker, wait_for
from edx_event_bus_kafka.testing.memory import InMemoryKafka


class Side:
    """One Kafka to run checks on: how to make its clients and topics."""

    factory: ClientFactory
    bootstrap: str
    fast_consumer: dict[str, Any]

    def topic(self, partitions: int = 1) -> str:
        """A new topic with ``partitions``."""
        raise NotImplementedError

    def unreachable(self) -> tuple[ClientFactory, str]:
        """A factory and bootstrap address of a broker that does not answer."""
        raise NotImplementedError

    def config(self, **extra: Any) -> dict[str, Any]:
        """Client options for this side."""
        return {"bootstrap.servers": self.bootstrap, "log_level": 0, **extra}

    def producer(self, **extra: Any) -> ProducerClient:
        """A producer that sends at once (no batching wait)."""
        return self.factory.producer(self.config(**{"linger.ms": 0, **extra}))

    def consumer(self, group: str | None = None, **extra: Any) -> ConsumerClient:
        """A consumer in ``group`` (a new one by default), from the earliest offset, committing only when asked."""
        return self.factory.consumer(self.config(**{
            "group.id": group or f"contract-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest",
            "enable.auto.commit": False, **self.fast_consumer, **extra}))


class RealSide(Side):
    """The run's real broker, through confluent-kafka."""

    def __init__(self, broker: KafkaTestBroker):
        self.broker = broker
        self.factory = CONFLUENT
        self.bootstrap = broker.bootstrap_servers
        self.fast_consumer = broker.consumer_config()

    def topic(self, partitions: int = 1) -> str:
        name = f"contract-{uuid.uuid4().hex[:10]}"
        self.broker.create_topics([name], partitions=partitions)
        return name

    def unreachable(self) -> tuple[ClientFactory, str]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return CONFLUENT, f"127.0.0.1:{port}"


class MemorySide(Side):
    """An in-memory Kafka."""

    def __init__(self, kafka: InMemoryKafka):
        self.kafka = kafka
        self.factory = kafka
        self.bootstrap = kafka.bootstrap_servers
        self.fast_consumer = {}

    def topic(self, partitions: int = 1) -> str:
        name = f"contract-{uuid.uuid4().hex[:10]}"
        self.kafka.create_topic(name, partitions)
        return name

    def unreachable(self) -> tuple[ClientFactory, str]:
        down = InMemoryKafka()
        down.go_down()
        return down, down.bootstrap_servers


def produce_each(producer: ProducerClient, topic: str, values: list[bytes], **options: Any) -> list[Any]:
    """Produce ``values`` one by one, each flushed alone (one record per batch); the delivered messages."""
    delivered: list[Any] = []
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda error, message: delivered.append((error, message)),
                         **options)
        assert producer.flush(10) == 0
    assert [error for error, _ in delivered] == [None] * len(values)
    return [message for _, message in delivered]


def consume_until(consumer: ConsumerClient, count: int, what: str) -> list[Any]:
    """What the consumer fetches until it has at least ``count`` messages or events."""
    found: list[Any] = []

    def enough() -> bool:
        found.extend(consumer.consume(count - len(found), timeout=0.5))
        return len(found) >= count

    wait_for(enough, timeout=20, interval=0, what=what)
    return found


def read_all(consumer: ConsumerClient, topic: str, partition: int, count: int) -> list[Any]:
    """The first ``count`` messages of one partition, read by assignment from the beginning."""
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    found: list[Any] = []
    deadline = time.monotonic() + 20
    while len(found) < count and time.monotonic() < deadline:
        found.extend(message for message in consumer.consume(count - len(found), timeout=0.5)
                     if message.error() is None)
    return found


# -- the checks ----------------------------------------------------------------------------------


def keyed_messages_land_on_crc32_of_the_key(side: Side) -> None:
    """A key goes to CRC32(key) % partitions (librdkafka's consistent_random); a null key to some partition."""
    topic = side.topic(partitions=7)
    producer = side.producer()
    placed: list[tuple[bytes | None, int]] = []
    keys: list[bytes | None] = [f"course-v1:edX+C{number}+2026".encode() for number in range(30)] + [None, None]

    def recorder(key: bytes | None) -> Callable[[Any, Any], None]:
        return lambda _error, message: placed.append((key, message.partition()))

    for key in keys:
        producer.produce(topic, value=b"v", key=key, on_delivery=recorder(key))
    assert producer.flush(10) == 0
    assert len(placed) == len(keys)
    for key, partition in placed:
        if key is None:
            assert 0 <= partition < 7
        else:
            assert partition == zlib.crc32(key) % 7, key


def keys_values_headers_and_timestamps_round_trip(side: Side) -> None:
    """Keys, null values, headers (repeated, text made bytes, None kept) and producer timestamps come back as sent."""
    topic = side.topic()
    stamp = int(time.time() * 1000) - 5000
    producer = side.producer()
    producer.produce(topic, value=None, key=b"k1", timestamp=stamp)
    producer.produce(topic, value=b"", key=b"", headers=[("a", "text"), ("b", None), ("a", b"\xff")],
                     timestamp=stamp + 1)
    assert producer.flush(10) == 0
    first, second = read_all(side.consumer(), topic, 0, 2)
    assert (first.key(), first.value(), first.headers(), first.timestamp()) == (b"k1", None, None, (1, stamp))
    assert (second.key(), second.value()) == (b"", b"")
    assert second.headers() == [("a", b"text"), ("b", None), ("a", b"\xff")]
    assert second.timestamp() == (1, stamp + 1)


def delivery_reports_come_from_flush_with_offsets_in_order(side: Side) -> None:
    """Reports wait for poll/flush (len counts them), then come once each, in order, with increasing offsets."""
    topic = side.topic()
    producer = side.producer()
    reports: list[tuple[Any, int]] = []
    for number in range(3):
        producer.produce(topic, value=str(number).encode(), partition=0,
                         on_delivery=lambda error, message: reports.append((error, message.offset())))
    assert len(producer) == 3 and reports == []
    assert producer.flush(10) == 0
    assert reports == [(None, 0), (None, 1), (None, 2)]
    assert len(producer) == 0


def watermarks_and_committed_offsets(side: Side) -> None:
    """High watermark = end; committed is OFFSET_INVALID until a commit, then what was committed, for the group."""
    topic = side.topic()
    produce_each(side.producer(), topic, [b"a", b"b", b"c"])
    group = f"contract-{uuid.uuid4().hex[:8]}"
    consumer = side.consumer(group)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 3)
        assert [tp.offset for tp in consumer.committed([TopicPartition(topic, 0)], timeout=10)] == [OFFSET_INVALID]
        done = consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
        assert [(tp.topic, tp.partition, tp.offset) for tp in done] == [(topic, 0, 2)]
    finally:
        consumer.close()
    other = side.consumer(group)
    try:
        assert [tp.offset for tp in other.committed([TopicPartition(topic, 0)], timeout=10)] == [2]
    finally:
        other.close()


def metadata_lists_partitions_and_flags_unknown_topics(side: Side) -> None:
    """list_topics gives each partition a leader; a consumer is told a topic is unknown, an admin creates it."""
    topic = side.topic(partitions=3)
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    admin = side.factory.admin(side.config())
    consumer = side.consumer()
    try:
        for client in (admin, consumer):
            found = client.list_topics(topic, timeout=10).topics[topic]
            assert found.error is None and sorted(found.partitions) == [0, 1, 2]
            assert all(partition.leader >= 0 for partition in found.partitions.values())
        unknown = consumer.list_topics(missing, timeout=10).topics[missing]
        assert unknown.error is not None and unknown.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        # An admin client asks as a producer does, which a broker with auto-creation answers by creating
        # the topic (Apache Kafka first says LEADER_NOT_AVAILABLE while it does).
        admin.list_topics(missing, timeout=10)
        wait_for(lambda: consumer.list_topics(missing, timeout=10).topics[missing].error is None, timeout=20,
                 interval=0.1, what="the topic the admin asked about to be created")
    finally:
        consumer.close()


def watermarks_of_a_missing_partition_raise(side: Side) -> None:
    """Asking for the watermarks of a partition that does not exist raises KafkaException."""
    topic = side.topic()
    consumer = side.consumer()
    try:
        with pytest.raises(KafkaException):
            consumer.get_watermark_offsets(TopicPartition(topic, 5), timeout=5)
    finally:
        consumer.close()


def consume_waits_for_the_batch_or_the_timeout(side: Side) -> None:
    """consume(n, t) holds a ready message back until n came or t passed; consume(1, t) returns with the first."""
    topic = side.topic()
    produce_each(side.producer(), topic, [b"only"])
    consumer = side.consumer()
    try:
        (first,) = read_all(consumer, topic, 0, 1)
        assert first.value() == b"only"
        consumer.assign([TopicPartition(topic, 0, 0)])
        started = time.monotonic()
        held = [message for message in consumer.consume(5, timeout=1.0) if message.error() is None]
        assert time.monotonic() - started >= 0.9
        assert [message.value() for message in held] == [b"only"]
    finally:
        consumer.close()


def assigned_consumer_positions(side: Side) -> None:
    """position() is OFFSET_INVALID before the first fetch and the next offset after; assign() picks the start."""
    topic = side.topic()
    produce_each(side.producer(), topic, [b"a", b"b", b"c"])
    consumer = side.consumer()
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert [tp.offset for tp in consumer.position([TopicPartition(topic, 0)])] == [OFFSET_INVALID]
        assert [message.value() for message in read_all(consumer, topic, 0, 3)] == [b"a", b"b", b"c"]
        assert [tp.offset for tp in consumer.position([TopicPartition(topic, 0)])] == [3]
        consumer.assign([TopicPartition(topic, 0, 1)])
        found = consume_until(consumer, 2, "two messages from offset 1")
        assert [message.value() for message in found] == [b"b", b"c"]
    finally:
        consumer.close()


def paused_partitions_fetch_nothing_until_resumed_and_seek_rereads(side: Side) -> None:
    """assignment() lists the assigned partitions; pause() stops fetching, resume() restarts it, seek() rereads."""
    topic = side.topic()
    producer = side.producer()
    produce_each(producer, topic, [b"a", b"b"])
    consumer = side.consumer()
    try:
        assert [message.value() for message in read_all(consumer, topic, 0, 2)] == [b"a", b"b"]
        assert [(tp.topic, tp.partition) for tp in consumer.assignment()] == [(topic, 0)]
        consumer.pause(consumer.assignment())
        produce_each(producer, topic, [b"c"])
        assert [message for message in consumer.consume(5, timeout=1.0) if message.error() is None] == []
        consumer.resume(consumer.assignment())
        assert [message.value() for message in consume_until(consumer, 1, "the message produced while paused")] \
            == [b"c"]
        consumer.seek(TopicPartition(topic, 0, 0))
        assert [message.value() for message in consume_until(consumer, 3, "the partition again after a seek")] \
            == [b"a", b"b", b"c"]
    finally:
        consumer.close()


def poll_until(consumers: list[ConsumerClient], condition: Callable[[], bool], what: str) -> None:
    """Poll every consumer (serving rebalance callbacks) until ``condition()`` holds."""
    def polled() -> bool:
        for consumer in consumers:
            consumer.poll(0.05)
        return condition()

    wait_for(polled, timeout=45, interval=0, what=what)


def a_lone_member_gets_every_partition_and_revokes_them_on_close(side: Side) -> None:
    """subscribe: on_assign hands a lone member all partitions (from poll); close() revokes them."""
    topic = side.topic(partitions=3)
    consumer = side.consumer()
    events: list[tuple[str, list[int]]] = []

    def record(kind: str) -> Callable[[Any, list[TopicPartition]], None]:
        return lambda _consumer, partitions: events.append((kind, sorted(tp.partition for tp in partitions)))

    consumer.subscribe([topic], on_assign=record("assign"), on_revoke=record("revoke"))
    poll_until([consumer], lambda: any(kind == "assign" and parts for kind, parts in events), "an assignment")
    assert events == [("assign", [0, 1, 2])]
    consumer.close()
    assert events[-1] == ("revoke", [0, 1, 2])


def two_members_share_the_partitions(side: Side) -> None:
    """A second member makes the group rebalance: the two then own disjoint sets covering every partition."""
    topic = side.topic(partitions=4)
    group = f"contract-{uuid.uuid4().hex[:8]}"
    owned: list[set[int]] = [set(), set()]

    def tracker(index: int) -> dict[str, Any]:
        def assign(_consumer: Any, partitions: list[TopicPartition]) -> None:
            owned[index].update(tp.partition for tp in partitions)

        def revoke(_consumer: Any, partitions: list[TopicPartition]) -> None:
            owned[index].difference_update(tp.partition for tp in partitions)

        return {"on_assign": assign, "on_revoke": revoke, "on_lost": revoke}

    first = side.consumer(group)
    first.subscribe([topic], **tracker(0))
    poll_until([first], lambda: owned[0] == {0, 1, 2, 3}, "the first member to own everything")
    second = side.consumer(group)
    second.subscribe([topic], **tracker(1))
    try:
        poll_until([first, second], lambda: bool(owned[0]) and bool(owned[1]) and not owned[0] & owned[1]
                   and owned[0] | owned[1] == {0, 1, 2, 3}, "the two members to share the partitions")
    finally:
        first.close()
        second.close()


def creating_an_existing_topic_fails_with_topic_already_exists(side: Side) -> None:
    """create_topics: a new topic is created; creating it again fails its future with TOPIC_ALREADY_EXISTS."""
    name = f"contract-{uuid.uuid4().hex[:10]}"
    admin = side.factory.admin(side.config())
    (future,) = admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)],
                                    operation_timeout=10, request_timeout=10).values()
    assert future.result(timeout=10) is None
    wait_for(lambda: len(admin.list_topics(name, timeout=10).topics[name].partitions) == 2, timeout=10,
             what="the new topic's partitions")
    (again,) = admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)],
                                   operation_timeout=10, request_timeout=10).values()
    error = again.exception(timeout=10)
    assert isinstance(error, KafkaException) and error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def an_oversized_message_is_refused_by_produce(side: Side) -> None:
    """A message over message.max.bytes makes produce() raise MSG_SIZE_TOO_LARGE; nothing is queued."""
    producer = side.producer(**{"message.max.bytes": 2000})
    with pytest.raises(KafkaException) as raised:
        producer.produce(side.topic(), value=b"x" * 5000)
    assert raised.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert len(producer) == 0


def an_illegal_topic_name_fails_the_delivery_report(side: Side) -> None:
    """produce() to an illegal topic name is accepted; its delivery report fails with TOPIC_EXCEPTION."""
    producer = side.producer()
    reports: list[Any] = []
    producer.produce("not a valid topic!", value=b"v", on_delivery=lambda error, _message: reports.append(error))
    assert producer.flush(10) == 0
    (error,) = reports
    assert error is not None and error.code() == KafkaError.TOPIC_EXCEPTION


def unreachable_broker__queued_messages_time_out_or_are_purged(side: Side) -> None:
    """With no broker, messages wait: message.timeout.ms fails them with _MSG_TIMED_OUT, purge() with _PURGE_QUEUE."""
    factory, bootstrap = side.unreachable()
    producer = factory.producer({"bootstrap.servers": bootstrap, "log_level": 0, "message.timeout.ms": 300,
                                 "error_cb": lambda _error: None})
    reports: list[Any] = []
    producer.produce("anywhere", value=b"v", on_delivery=lambda error, _message: reports.append(error))
    assert producer.flush(10) == 0
    assert [error.code() for error in reports] == [KafkaError._MSG_TIMED_OUT]
    patient = factory.producer({"bootstrap.servers": bootstrap, "log_level": 0, "error_cb": lambda _error: None})
    reports.clear()
    for _ in range(2):
        patient.produce("anywhere", value=b"v", on_delivery=lambda error, _message: reports.append(error))
    assert patient.flush(0.2) == 2
    patient.purge(in_queue=True, in_flight=False)
    assert patient.flush(5) == 0
    assert [error.code() for error in reports] == [KafkaError._PURGE_QUEUE] * 2


def metadata_from_a_broker_that_does_not_answer_fails_after_the_timeout(side: Side) -> None:
    """list_topics against a broker that does not answer waits out its timeout, then raises KafkaException."""
    factory, bootstrap = side.unreachable()
    admin = factory.admin({"bootstrap.servers": bootstrap, "log_level": 0, "error_cb": lambda _error: None})
    started = time.monotonic()
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=0.5)
    assert time.monotonic() - started >= 0.45


def partition_eof_events_when_asked_for(side: Side) -> None:
    """With enable.partition.eof, reaching the end of a partition yields one _PARTITION_EOF event."""
    topic = side.topic()
    produce_each(side.producer(), topic, [b"a"])
    consumer = side.consumer(None, **{"enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        message, eof = consume_until(consumer, 2, "the message and the end-of-partition event")[:2]
        assert message.value() == b"a" and message.error() is None
        assert eof.error() is not None and eof.error().code() == KafkaError._PARTITION_EOF
    finally:
        consumer.close()


def offsets_for_times_find_the_first_message_at_or_after(side: Side) -> None:
    """offsets_for_times: the first offset whose timestamp is at or after the time; -1 after the last one."""
    topic = side.topic()
    base = (int(time.time()) - 3600) * 1000
    producer = side.producer()
    for number in range(3):
        producer.produce(topic, value=b"v", timestamp=base + number * 1000)
    assert producer.flush(10) == 0
    consumer = side.consumer()
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, 0, base + 500)], timeout=10)
        assert [tp.offset for tp in found] == [1]
        after = consumer.offsets_for_times([TopicPartition(topic, 0, base + 5000)], timeout=10)
        assert [tp.offset for tp in after] == [-1]
    finally:
        consumer.close()


CHECKS: list[Callable[[Side], None]] = [
    keyed_messages_land_on_crc32_of_the_key,
    keys_values_headers_and_timestamps_round_trip,
    delivery_reports_come_from_flush_with_offsets_in_order,
    watermarks_and_committed_offsets,
    metadata_lists_partitions_and_flags_unknown_topics,
    watermarks_of_a_missing_partition_raise,
    consume_waits_for_the_batch_or_the_timeout,
    assigned_consumer_positions,
    paused_partitions_fetch_nothing_until_resumed_and_seek_rereads,
    a_lone_member_gets_every_partition_and_revokes_them_on_close,
    two_members_share_the_partitions,
    creating_an_existing_topic_fails_with_topic_already_exists,
    an_oversized_message_is_refused_by_produce,
    an_illegal_topic_name_fails_the_delivery_report,
    unreachable_broker__queued_messages_time_out_or_are_purged,
    metadata_from_a_broker_that_does_not_answer_fails_after_the_timeout,
    partition_eof_events_when_asked_for,
    offsets_for_times_find_the_first_message_at_or_after,
]
#: Checks Tansu cannot pass (it answers every look-up by time with offset 0): Apache Kafka only there.
APACHE_ONLY = {offsets_for_times_find_the_first_message_at_or_after}
