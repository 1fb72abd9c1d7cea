"""The transactional outbox on the in-memory Kafka: what commits is published, outages and errors leave rows pending."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from confluent_kafka import KafkaError
from django.db import transaction
from django.utils import timezone
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.internal.outbox.publisher import OutboxPublisher, backlog
from edx_event_bus_kafka.internal.outbox.relay import OutboxRelay
from edx_event_bus_kafka.internal.runtime.worker import EXIT_CONFIG, EXIT_OK, EXIT_TOO_MANY_ERRORS
from edx_event_bus_kafka.internal.wire.decode import decode_message
from edx_event_bus_kafka.models import OutboxEvent
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data

pytestmark = pytest.mark.django_db(transaction=True)


def send(producer, topic: str, number: int, keys: int = 1) -> EventsMetadata:
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    data = enrollment_event_data(number, course=f"course-v1:edX+K{number % keys}+2026")
    producer.send(signal=ENROLLMENT_SIGNAL, topic=topic, event_key_field=ENROLLMENT_KEY_FIELD, event_data=data,
                  event_metadata=metadata)
    return metadata


def user_ids(messages) -> list[int]:
    """The event numbers (user ids) of the messages, decoded with our decoder."""
    return [decode_message(message)[1]["enrollment"].user.id for message in messages]


def status_count(status: str) -> int:
    return OutboxEvent.objects.filter(status=status).count()


@pytest.fixture
def outbox(bus, settings):
    """Outbox delivery on the in-memory Kafka; rows published right after commit unless a test says otherwise."""
    settings.EVENT_BUS_KAFKA_DELIVERY_MODE = "outbox"
    settings.EVENT_BUS_KAFKA_OUTBOX_DELIVERY_TIMEOUT_SEC = 0.2
    return bus


@pytest.fixture
def relay_only(outbox, settings):
    """Outbox delivery where only a relay (or an explicit publisher) publishes."""
    settings.EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT = False
    return outbox


@pytest.fixture
def topic(outbox) -> str:
    name = f"outbox-{uuid.uuid4().hex[:8]}"
    outbox.create_topic(name, 3)
    return name


# SQLite (the unit tier's database) answers "table is locked" to a connection that reads while another
# writes. So while a publisher works in another thread, tests wait on what reached the in-memory
# Kafka or on log lines, and look at the rows only once that thread is done.


def run_relay(relay: OutboxRelay, condition, what: str) -> int:
    """Run the relay in a thread until ``condition()`` (which must not query the database) holds; its status."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(relay.run()))
    thread.start()
    try:
        wait_for(lambda: condition() or result, timeout=10, what=what)
    finally:
        relay.stop()
        thread.join(10)
    assert condition(), f"the relay exited with {result} before {what}"
    return result[0]


def test_rolled_back_transaction__writes_and_publishes_nothing(outbox, topic):
    """Events sent in a transaction that rolls back leave no row and never reach Kafka."""
    producer = create_producer()
    with pytest.raises(RuntimeError), transaction.atomic():
        send(producer, topic, 1)
        assert OutboxEvent.objects.count() == 1
        raise RuntimeError("roll back")
    kept = send(producer, topic, 2)  # autocommit: written and published at once
    wait_for(lambda: outbox.messages(topic), timeout=10, what="the committed row published")
    producer.close()  # waits for the after-commit publisher to finish its pass
    assert status_count(OutboxEvent.PUBLISHED) == 1 and OutboxEvent.objects.count() == 1
    assert [dict(m.headers())["ce_id"] for m in outbox.messages(topic)] == [str(kept.id).encode()]


def test_committed_transaction__publishes_every_event_in_order_and_marks_them(outbox, topic):
    """All events of a committed transaction are published right after commit, in order, and marked."""
    producer = create_producer()
    with transaction.atomic():
        sent = [send(producer, topic, number) for number in range(20)]
        assert producer.stats.snapshot()["sent"] == 0
    wait_for(lambda: len(outbox.messages(topic)) == 20, timeout=10, what="all rows published")
    producer.close()  # waits for the after-commit publisher to finish its pass
    assert status_count(OutboxEvent.PUBLISHED) == 20
    messages = outbox.messages(topic)
    assert [dict(m.headers())["ce_id"] for m in messages] == [str(m.id).encode() for m in sent]
    assert user_ids(messages) == list(range(20))


def test_writing__needs_neither_broker_nor_registry(relay_only, settings):
    """With the broker down and the registry unreachable, send still writes the row and raises nothing."""
    settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = "http://127.0.0.1:1"
    relay_only.go_down()
    producer = create_producer()
    with transaction.atomic():
        metadata = send(producer, "offline-topic", 7)
    row = OutboxEvent.objects.get()
    assert row.event_id == str(metadata.id) and row.status == OutboxEvent.PENDING
    assert json.loads(row.event_data)["enrollment"]["user"]["id"] == 7
    assert producer.stats.snapshot()["outboxed"] == 1 and producer.stats.snapshot()["failed"] == 0


def test_unserializable_row__moved_aside_with_its_error_and_the_rest_published(relay_only, topic):
    """A row that can never be serialized is marked failed with its error; rows after it still go out."""
    producer = create_producer()
    send(producer, topic, 1)
    broken = OutboxEvent.objects.create(topic=topic, event_type="org.openedx.nothing.v1", event_key_field="x",
                                        event_id="broken", event_data="{}", event_metadata="{}")
    send(producer, topic, 2)
    publisher = OutboxPublisher()
    try:
        result = publisher.publish_batch()
    finally:
        publisher.close()
    assert (result.published, result.failed_permanently, result.left_pending) == (2, 1, 0)
    broken.refresh_from_db()
    assert broken.status == OutboxEvent.FAILED and "org.openedx.nothing.v1" in broken.last_error
    assert backlog() == {"pending": 0, "failed": 1, "oldest_pending_age_sec": None}
    assert user_ids(relay_only.messages(topic)) == [1, 2]


def test_row_the_broker_refuses_to_take__moved_aside_and_the_rest_published(relay_only, topic, settings):
    """A row whose message produce() refuses (larger than message.max.bytes) can never go out: moved aside."""
    settings.EVENT_BUS_KAFKA_PRODUCER_CONFIG = {"message.max.bytes": 1000}
    producer = create_producer()
    send(producer, topic, 1)
    OutboxEvent.objects.filter(event_id=OutboxEvent.objects.get().event_id).update(
        event_data=json.dumps({"enrollment": {**json.loads(OutboxEvent.objects.get().event_data)["enrollment"],
                                              "mode": "m" * 2000}}))
    send(producer, topic, 2)
    publisher = OutboxPublisher()
    try:
        result = publisher.publish_batch()
    finally:
        publisher.close()
    assert (result.published, result.failed_permanently, result.left_pending) == (1, 1, 0)
    assert "MSG_SIZE_TOO_LARGE" in OutboxEvent.objects.get(status=OutboxEvent.FAILED).last_error
    assert user_ids(relay_only.messages(topic)) == [2]


def test_failed_delivery__row_stays_pending_and_the_next_pass_publishes_it(relay_only, topic):
    """A delivery the broker fails (not enough replicas) leaves the row pending with the error; it goes out later."""
    producer = create_producer()
    send(producer, topic, 1)
    relay_only.fail_next_delivery(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS))
    publisher = OutboxPublisher()
    try:
        first = publisher.publish_batch()
        second = publisher.publish_batch()
    finally:
        publisher.close()
    assert (first.published, first.left_pending) == (0, 1)
    assert "Not enough in-sync replicas" in first.errors[0]
    assert (second.published, second.left_pending) == (1, 0)
    assert user_ids(relay_only.messages(topic)) == [1]


def test_purge__deletes_published_rows_older_than_retention_only(relay_only, settings):
    """purge() removes published rows past EVENT_BUS_KAFKA_OUTBOX_RETENTION_SEC and keeps pending and recent ones."""
    settings.EVENT_BUS_KAFKA_OUTBOX_RETENTION_SEC = 3600
    now = timezone.now()
    for name, status, published_at in [("old", OutboxEvent.PUBLISHED, now - timedelta(hours=2)),
                                       ("recent", OutboxEvent.PUBLISHED, now - timedelta(minutes=5)),
                                       ("pending", OutboxEvent.PENDING, None)]:
        OutboxEvent.objects.create(topic="t", event_type="t", event_key_field="k", event_id=name, event_data="{}",
                                   event_metadata="{}", status=status, published_at=published_at)
    publisher = OutboxPublisher()
    try:
        assert publisher.purge() == 1
    finally:
        publisher.close()
    assert set(OutboxEvent.objects.values_list("event_id", flat=True)) == {"recent", "pending"}


def test_relay__publishes_the_backlog_in_order_and_stops_cleanly(relay_only, topic):
    """The relay publishes pending rows in id order (per key order kept) and returns 0 when stopped."""
    producer = create_producer()
    for number in range(30):
        send(producer, topic, number, keys=3)
    relay = OutboxRelay()
    assert run_relay(relay, lambda: len(relay_only.messages(topic)) == 30, "the backlog to drain") == EXIT_OK
    assert relay.published == 30 and backlog()["pending"] == 0
    assert sorted(user_ids(relay_only.messages(topic))) == list(range(30))
    for partition in range(3):
        numbers = user_ids(relay_only.messages(topic, partition))
        assert numbers == sorted(numbers)


def test_relay__broker_outage_leaves_rows_pending_then_the_limit_exits_3(relay_only, topic, settings, caplog):
    """While the broker is down every pass leaves the rows pending and backs off; at the limit the relay exits 3."""
    settings.EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT = 2
    producer = create_producer()
    send(producer, topic, 1)
    relay_only.go_down()
    assert OutboxRelay().run() == EXIT_TOO_MANY_ERRORS
    assert backlog()["pending"] == 1 and relay_only.messages(topic) == []
    assert "rows left pending" in caplog.text and "Too many consecutive errors" in caplog.text


def test_relay__after_an_outage_publishes_everything_that_waited(relay_only, topic, caplog):
    """Rows that a pass could not publish during an outage are all published once the broker is back."""
    producer = create_producer()
    relay_only.go_down()
    for number in range(5):
        send(producer, topic, number)
    relay = OutboxRelay()

    def drained_after_a_failed_pass() -> bool:
        if "rows left pending" in caplog.text:
            relay_only.come_back()
        return len(relay_only.messages(topic)) == 5

    assert run_relay(relay, drained_after_a_failed_pass, "a failed pass, then the backlog drained") == EXIT_OK
    assert backlog()["pending"] == 0
    assert user_ids(relay_only.messages(topic)) == list(range(5))


def test_relay__refusing_broker_exits_2(relay_only, topic, caplog):
    """A broker that refuses our credentials ends the relay with the configuration status, rows kept."""
    send(create_producer(), topic, 1)
    relay_only.refuse_connections()
    assert OutboxRelay().run() == EXIT_CONFIG
    assert backlog()["pending"] == 1
    assert "Kafka refused the outbox publisher" in caplog.text


def test_relay__fatal_client_error_rebuilds_the_producer_and_moves_nothing_aside(relay_only, topic):
    """After a fatal producer error the relay's next pass uses a new client: every row is published, none failed."""
    producer = create_producer()
    send(producer, topic, 1)
    publisher = OutboxPublisher()
    try:
        with relay_only.outage():
            assert publisher.publish_batch().left_pending == 1
            relay_only.raise_client_error(KafkaError(KafkaError._FATAL, "sequence error", fatal=True),
                                          kind="producer")
            assert publisher.publish_batch().left_pending == 1  # the pass serves the error callback
        send(producer, topic, 2)
        result = publisher.publish_batch()
    finally:
        publisher.close()
    assert (result.published, result.failed_permanently) == (2, 0)
    assert status_count(OutboxEvent.FAILED) == 0
    assert user_ids(relay_only.messages(topic)) == [1, 2]


def test_publisher__a_client_whose_deliveries_all_fail_while_the_broker_answers_is_replaced(relay_only, topic,
                                                                                          caplog):
    """Three passes delivering nothing with the broker answering (a broker that lost its producer state): replaced."""
    for number in range(2):
        send(create_producer(), topic, number)
    relay_only.fail_next_delivery(KafkaError(KafkaError.UNKNOWN_PRODUCER_ID), times=6)  # three passes of two rows
    publisher = OutboxPublisher()
    try:
        first = publisher.producer
        for _ in range(3):
            assert publisher.publish_batch().published == 0
        assert publisher.producer is not first
        (line,) = [r.getMessage() for r in caplog.records if "replacing the Kafka client" in r.getMessage()]
        assert "3 passes in a row delivered nothing although the broker answers" in line
        assert publisher.publish_batch().published == 2
    finally:
        publisher.close()

