"""The client module's rules, on the in-memory Kafka: routing, rebuild after a fatal error, produce and wait."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from edx_event_bus_kafka.internal.kafka import clients
from edx_event_bus_kafka.internal.kafka.clients import Outgoing, ProducerHandle, produce_and_wait
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch
from edx_event_bus_kafka.testing.memory import InMemoryKafka

FATAL = KafkaError(KafkaError._FATAL, "sequence error", fatal=True)


def messages(*values: bytes, topic: str = "t") -> list[Outgoing]:
    return [Outgoing(topic, None, value, [("h", b"v")]) for value in values]


def test_clients_from__nests_and_each_block_restores_what_it_replaced():
    """Blocks of clients_from nest; leaving one puts back the factory it replaced, in every case."""
    outer, inner = InMemoryKafka(), InMemoryKafka()
    with clients.clients_from(outer):
        with clients.clients_from(inner):
            assert clients.current_factory() is inner
        assert clients.current_factory() is outer
        with pytest.raises(RuntimeError), clients.clients_from(inner):
            raise RuntimeError("a failing test")
        assert clients.current_factory() is outer
    assert clients.current_factory() is clients.CONFLUENT


def test_new_clients__get_the_error_callback_in_their_configuration():
    """new_producer/new_consumer/new_admin pass error_cb into the configuration the factory gets."""
    kafka, seen = InMemoryKafka(), []
    with clients.clients_from(kafka):
        made = [clients.new_producer({}, error_cb=seen.append),
                clients.new_consumer({"group.id": "g", "enable.auto.commit": False}, error_cb=seen.append),
                clients.new_admin({}, error_cb=seen.append)]
    kafka.raise_client_error(KafkaError(KafkaError._TRANSPORT))
    for client in made:
        client.poll(0)
    assert [error.code() for error in seen] == [KafkaError._TRANSPORT] * 3


def test_produce_and_wait__every_message_acknowledged_in_order():
    """All messages delivered: one outcome each, in order, delivered and without a reason."""
    kafka = InMemoryKafka()
    outcomes = produce_and_wait(kafka.producer({}), messages(b"1", b"2", b"3"), 5)
    assert [(outcome.delivered, outcome.reason) for outcome in outcomes] == [(True, "")] * 3
    assert [message.value() for message in kafka.messages("t")] == [b"1", b"2", b"3"]


def test_produce_and_wait__a_refused_message_fails_alone():
    """A message produce() refuses (too large) fails at once with the reason; the others are delivered."""
    kafka = InMemoryKafka()
    producer = kafka.producer({"message.max.bytes": 1000})
    outcomes = produce_and_wait(producer, messages(b"small", b"x" * 2000, b"small too"), 5)
    assert [outcome.delivered for outcome in outcomes] == [True, False, True]
    assert "Message size too large" in outcomes[1].reason


def test_produce_and_wait__a_full_local_queue_is_waited_out():
    """BufferError from produce() (the local queue is full) is retried after serving reports."""
    kafka = InMemoryKafka()
    kafka.fail_next_produce(BufferError("Local: Queue full"), times=3)
    (outcome,) = produce_and_wait(kafka.producer({}), messages(b"v"), 5)
    assert outcome.delivered


def test_produce_and_wait__failed_delivery_reports_carry_the_error():
    """A delivery report with an error makes that message's outcome fail with the broker's error."""
    kafka = InMemoryKafka()
    kafka.fail_next_delivery(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS))
    failed, delivered = produce_and_wait(kafka.producer({}), messages(b"1", b"2"), 5)
    assert not failed.delivered and failed.error.code() == KafkaError.NOT_ENOUGH_REPLICAS
    assert delivered.delivered


def test_produce_and_wait__time_up__messages_not_sent_are_withdrawn():
    """Unacknowledged when time is up: reported as such, and withdrawn so they cannot arrive later."""
    kafka = InMemoryKafka()
    producer = kafka.producer({})
    with kafka.outage():
        outcomes = produce_and_wait(producer, messages(b"1", b"2"), 0.1)
    assert [outcome.reason for outcome in outcomes] == [
        "not acknowledged within 0.1 s (withdrawn before it was sent)"] * 2
    assert producer.flush(1) == 0 and kafka.messages("t") == []


def test_produce_and_wait__give_up_ends_the_wait_early():
    """give_up() returning True (say, the broker refuses us) stops the wait long before the timeout."""
    kafka = InMemoryKafka()
    calls: list[bool] = []

    def give_up() -> bool:
        calls.append(True)
        return True

    with kafka.outage():
        (outcome,) = produce_and_wait(kafka.producer({}), messages(b"v"), 30, give_up=give_up)
    assert calls == [True] and not outcome.delivered


def test_producer_handle__rebuilds_after_a_fatal_error_and_fails_what_the_old_client_held():
    """A fatal error makes the handle build a new client on next use; messages the old one held fail."""
    kafka = InMemoryKafka()
    with clients.clients_from(kafka):
        handle = ProducerHandle({}, name="test producer")
        old = handle.client
        reports: list = []
        with kafka.outage():
            old.produce("t", value=b"held", on_delivery=lambda error, _message: reports.append(error))
        kafka.raise_client_error(FATAL, kind="producer")
        assert handle.client is old  # nothing known yet: the error callback runs at the next poll
        old.poll(0)
        new = handle.client
    assert new is not old and handle.client is new
    assert [error.code() for error in reports] == [KafkaError._FATAL]


def test_producer_handle__refusals_go_to_the_watch_and_other_errors_to_on_error():
    """Client errors: a refusal is the watch's (and nothing else), other non-fatal ones go to on_error."""
    kafka, others = InMemoryKafka(), []
    watch = RefusalWatch("test producer")
    with clients.clients_from(kafka):
        handle = ProducerHandle({}, name="test producer", refusals=watch, on_error=others.append)
    kafka.raise_client_error(KafkaError(KafkaError._AUTHENTICATION, "bad password"))
    kafka.raise_client_error(KafkaError(KafkaError._TRANSPORT))
    handle.client.poll(0)
    assert watch.reason is not None and "authentication failed" in watch.reason
    assert [error.code() for error in others] == [KafkaError._TRANSPORT]


def test_producer_handle__a_given_client_is_used_as_it_is():
    """A client handed in by the caller is used, and its errors are not the handle's to act on."""
    kafka = InMemoryKafka()
    given = kafka.producer({})
    handle = ProducerHandle({}, name="test producer", client=given)
    kafka.raise_client_error(FATAL, kind="producer")
    given.poll(0)
    assert handle.client is given and len(kafka.producers) == 1


#: confluent-kafka's client classes: only internal/kafka/clients.py may name them.
CLIENT_CLASSES = {"Producer", "Consumer", "AdminClient", "SerializingProducer", "DeserializingConsumer"}
ROOT = Path(__file__).resolve().parents[2]


def _client_class_uses(path: Path) -> list[str]:
    """Where ``path`` imports a confluent-kafka client class or reaches one as ``confluent_kafka.X``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confluent_kafka"):
            found += [f"{node.lineno}: imports {alias.name}" for alias in node.names if alias.name in CLIENT_CLASSES]
        elif (isinstance(node, ast.Attribute) and node.attr in CLIENT_CLASSES and isinstance(node.value, ast.Name)
              and node.value.id == "confluent_kafka"):
            found.append(f"{node.lineno}: confluent_kafka.{node.attr}")
    return found


def test_only_the_client_module_makes_kafka_clients():
    """The package, benchmarks and scripts make every Kafka client through internal/kafka/clients.py.

    (The in-memory Kafka's clients are its own classes; tests may observe real brokers with plain clients.)
    """
    allowed = ROOT / "edx_event_bus_kafka" / "internal" / "kafka" / "clients.py"
    offenders = {
        str(path.relative_to(ROOT)): uses
        for folder in ("edx_event_bus_kafka", "benchmarks", "scripts")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != allowed and (uses := _client_class_uses(path))
    }
    assert offenders == {}
    assert _client_class_uses(allowed)  # the scan does find them where they are
