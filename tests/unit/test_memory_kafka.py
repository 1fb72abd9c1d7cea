"""The in-memory Kafka: the contract checks a real broker also passes, and what only the fake offers."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable

import confluent_kafka
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from edx_event_bus_kafka.internal.kafka import clients
from edx_event_bus_kafka.testing.memory import InMemoryKafka
from edx_event_bus_kafka.testing.memory.storage import PARTITIONERS
from tests.support.kafka_contract import CHECKS, MemorySide, Side


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__ for check in CHECKS])
def test_memory_kafka_behaves_as_the_contract_says(check: Callable[[Side], None]) -> None:
    """The in-memory Kafka does what the named contract check asserts (so does the real broker)."""
    check(MemorySide(InMemoryKafka()))


@pytest.mark.parametrize("name", ["consistent", "murmur2", "fnv1a"])
def test_partitioners__match_librdkafkas_own_for_random_keys(name) -> None:
    """Our consistent, murmur2 and fnv1a partitioners place 2,000 random keys where librdkafka's functions do."""
    theirs = getattr(confluent_kafka, name)
    keys = [os.urandom(length % 40 + 1) for length in range(500)]
    for key in keys:
        for count in (1, 3, 7, 12):
            assert PARTITIONERS[name](key, count) == theirs(key, count), (key, count)


def test_unknown_partitioner__is_refused_naming_the_known_ones() -> None:
    """A producer configured with a partitioner librdkafka does not have fails at construction."""
    with pytest.raises(ValueError, match="consistent_random"):
        InMemoryKafka().producer({"partitioner": "round_robin_please"})


def test_entering__routes_the_packages_clients_and_leaving_restores_them() -> None:
    """Inside ``with InMemoryKafka()`` the package's clients are in-memory ones; afterwards real ones again."""
    with InMemoryKafka() as kafka:
        made = clients.new_producer({"bootstrap.servers": "anything:1"})
        assert made in kafka.producers
        assert clients.current_factory() is kafka
    assert clients.current_factory() is clients.CONFLUENT


def test_fatal_client_error__producer_fails_what_it_holds_and_refuses_more() -> None:
    """A fatal error reaches error_cb; queued messages fail with _FATAL and later produce() calls raise."""
    kafka = InMemoryKafka()
    seen: list[KafkaError] = []
    producer = kafka.producer({"error_cb": seen.append})
    reports: list = []
    with kafka.outage():
        producer.produce("t", value=b"held", on_delivery=lambda error, _message: reports.append(error))
        kafka.raise_client_error(KafkaError(KafkaError._FATAL, "sequence error", fatal=True), kind="producer")
    producer.poll(0)
    assert [error.code() for error in seen] == [KafkaError._ALL_BROKERS_DOWN, KafkaError._FATAL]
    assert [error.code() for error in reports] == [KafkaError._FATAL]
    with pytest.raises(KafkaException, match="fatal"):
        producer.produce("t", value=b"more")
    fresh = kafka.producer({})
    fresh.produce("t", value=b"new client")
    assert fresh.flush(1) == 0 and [m.value() for m in kafka.messages("t")] == [b"new client"]


def test_injected_faults__are_used_up_in_order_and_only_where_aimed() -> None:
    """fail_next_produce/delivery/poll hit the next matching calls only, as many times as asked."""
    kafka = InMemoryKafka()
    kafka.create_topic("a")
    kafka.fail_next_produce(BufferError("full"), topic="a")
    kafka.fail_next_delivery(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS), topic="a", times=2)
    producer = kafka.producer({})
    reports: list = []
    with pytest.raises(BufferError):
        producer.produce("a", value=b"1")
    for value in (b"2", b"3", b"4"):
        producer.produce("a", value=value, on_delivery=lambda error, message: reports.append((error, message.value())))
    producer.flush(1)
    assert [(error and error.code(), value) for error, value in reports] == [
        (KafkaError.NOT_ENOUGH_REPLICAS, b"2"), (KafkaError.NOT_ENOUGH_REPLICAS, b"3"), (None, b"4")]
    kafka.fail_next_poll(KafkaError(KafkaError._TRANSPORT), group="g1")
    other = kafka.consumer({"group.id": "g2", "enable.auto.commit": False})
    ours = kafka.consumer({"group.id": "g1", "enable.auto.commit": False})
    assert other.poll(0) is None
    (event,) = ours.consume(5, timeout=0)
    error = event.error()
    assert error is not None and error.code() == KafkaError._TRANSPORT
    assert ours.poll(0) is None


def test_refused_connections__every_poll_meets_the_refusal_and_metadata_fails_at_once() -> None:
    """refuse_connections(): error_cb sees the refusal at each poll, list_topics raises, nothing is delivered."""
    kafka = InMemoryKafka()
    seen: list[KafkaError] = []
    admin = kafka.admin({"error_cb": seen.append})
    producer = kafka.producer({"error_cb": seen.append})
    kafka.refuse_connections()
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=30)
    producer.produce("t", value=b"v")
    producer.poll(0)
    admin.poll(0)
    assert [error.code() for error in seen] == [KafkaError._AUTHENTICATION] * 2
    assert kafka.messages("t") == []
    kafka.accept_connections()
    assert producer.flush(1) == 0
    assert [message.value() for message in kafka.messages("t")] == [b"v"]


def test_outage__messages_wait_and_are_delivered_when_the_broker_is_back() -> None:
    """During an outage produced messages are held; once the broker is back a flush delivers them."""
    kafka = InMemoryKafka()
    producer = kafka.producer({})
    with kafka.outage():
        producer.produce("t", value=b"v")
        assert producer.flush(0.05) == 1
    assert producer.flush(1) == 0
    assert len(kafka.messages("t")) == 1


def test_expired_member__hears_on_lost_and_its_partitions_move_at_once() -> None:
    """expire(): the others get the partitions at their next poll; the member gets on_lost, then rejoins."""
    kafka = InMemoryKafka()
    kafka.create_topic("t", 2)
    config = {"group.id": "g", "enable.auto.commit": False}
    events: list[tuple[str, str, list[int]]] = []

    def callbacks(name: str) -> dict:
        def record(kind: str) -> Callable:
            return lambda _c, parts: events.append((name, kind, sorted(tp.partition for tp in parts)))
        return {"on_assign": record("assign"), "on_revoke": record("revoke"), "on_lost": record("lost")}

    first, second = kafka.consumer(config), kafka.consumer(config)
    first.subscribe(["t"], **callbacks("first"))
    second.subscribe(["t"], **callbacks("second"))
    for _ in range(3):
        first.poll(0)
        second.poll(0)
    assert kafka.assignment(first) == [("t", 0)] and kafka.assignment(second) == [("t", 1)]
    kafka.expire(first)
    with pytest.raises(KafkaException):
        first.commit(offsets=[TopicPartition("t", 0, 1)], asynchronous=False)
    second.poll(0)
    assert kafka.assignment(second) == [("t", 0), ("t", 1)]
    first.poll(0)
    assert ("first", "lost", [0]) in events
    assert kafka.members("g") == [second, first]


def test_consumer_waiting_in_poll__wakes_when_a_message_arrives() -> None:
    """A consumer blocked in poll(timeout) returns the message produced meanwhile from another thread."""
    kafka = InMemoryKafka()
    kafka.create_topic("t")
    consumer = kafka.consumer({"group.id": "g", "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition("t", 0, 0)])
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(consumer.poll(30)))
    waiter.start()
    kafka.send("t", b"hello")
    waiter.join(10)
    assert not waiter.is_alive() and got[0].value() == b"hello"


def test_automatic_commits__are_refused_at_construction() -> None:
    """The in-memory consumer commits only when asked: enable.auto.commit (librdkafka's default) is refused."""
    with pytest.raises(ValueError, match=r"enable\.auto\.commit"):
        InMemoryKafka().consumer({"group.id": "g"})
