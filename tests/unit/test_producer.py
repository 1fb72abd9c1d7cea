"""The producer on the in-memory Kafka: delivery modes, audit lines, failures, fatal errors, shutdown."""
from __future__ import annotations

import logging
import time
import uuid

import attr
import pytest
from confluent_kafka import KafkaError
from django.db import transaction
from openedx_events.data import EventsMetadata
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.internal.errors import ConfigurationError
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support import telemetry


def send(producer, topic, number=1, *, event_data=None, key_field=ENROLLMENT_KEY_FIELD) -> EventsMetadata:
    """Send one enrollment event; returns its metadata (send itself returns nothing and never raises)."""
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    result = producer.send(signal=ENROLLMENT_SIGNAL, topic=topic, event_key_field=key_field,
                           event_data=event_data or enrollment_event_data(number), event_metadata=metadata)
    assert result is None
    return metadata


def ids(bus, topic: str) -> list[bytes]:
    """The ``ce_id`` of each message stored in ``topic``."""
    return [dict(message.headers())["ce_id"] for message in bus.messages(topic)]


def failure_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.ERROR and "Error delivering message to Kafka event bus" in record.getMessage()]


def assert_logged_with_context(caplog, metadata, topic, reason):
    """The one failure line names the reason, topic, event id, and carries data and metadata as JSON."""
    (line,) = failure_lines(caplog)
    assert f"reason={reason}" in line
    assert f"topic={topic}" in line
    assert f"event_id={metadata.id}" in line
    assert '"username": "learner1"' in line  # event data, re-sendable with produce_event --data
    assert f'"id": "{metadata.id}"' in line  # metadata JSON


@pytest.fixture
def topic(bus) -> str:
    name = f"topic-{uuid.uuid4().hex[:8]}"
    bus.create_topic(name, 3)
    return name


@pytest.mark.django_db(transaction=True)
def test_on_commit__published_only_after_commit(bus, topic):
    """In on_commit mode an event sent inside a transaction is handed to Kafka when it commits."""
    producer = create_producer()
    with transaction.atomic():
        metadata = send(producer, topic)
        assert producer.stats.snapshot()["sent"] == 0
    assert producer.stats.snapshot()["sent"] == 1
    assert producer.prepare_for_shutdown(5) == 0
    assert ids(bus, topic) == [str(metadata.id).encode()]


@pytest.mark.django_db(transaction=True)
def test_on_commit__rolled_back_transaction_publishes_nothing(bus, topic):
    """An event of a rolled-back transaction is never published."""
    producer = create_producer()
    with pytest.raises(RuntimeError), transaction.atomic():
        send(producer, topic, 1)
        raise RuntimeError("roll back")
    kept = send(producer, topic, 2)  # outside any transaction: published at once
    assert producer.prepare_for_shutdown(5) == 0
    assert ids(bus, topic) == [str(kept.id).encode()]
    assert producer.stats.snapshot()["sent"] == 1


@pytest.mark.django_db(transaction=True)
def test_immediate_override__publishes_inside_transaction(bus, topic, settings):
    """A per-event-type override to immediate publishes before the transaction ends, as the reference does."""
    settings.EVENT_BUS_KAFKA_DELIVERY_MODE_OVERRIDES = {ENROLLMENT_SIGNAL.event_type: "immediate"}
    producer = create_producer()
    with transaction.atomic():
        send(producer, topic)
        assert producer.stats.snapshot()["sent"] == 1
        assert len(bus.messages(topic)) == 1


def test_send_event__openedx_events_handler_reaches_kafka(bus, settings):
    """COURSE_ENROLLMENT_CHANGED.send_event() is published via EVENT_BUS_PRODUCER_CONFIG and create_producer."""
    settings.EVENT_BUS_TOPIC_PREFIX = "stage"
    ENROLLMENT_SIGNAL.send_event(**enrollment_event_data(4))
    assert create_producer().prepare_for_shutdown(5) == 0
    (message,) = bus.messages("stage-learning-course-enrollment")
    assert dict(message.headers())["ce_type"] == ENROLLMENT_SIGNAL.event_type.encode()
    assert message.value()[10:] == serialize_event_data_to_bytes(enrollment_event_data(4), ENROLLMENT_SIGNAL)


def test_audit_log__one_line_per_delivered_event_without_event_data(bus, topic, caplog):
    """Each delivered event logs topic, partition, offset, message id and key at INFO, never the data."""
    caplog.set_level(logging.INFO, logger="edx_event_bus_kafka")
    producer = create_producer()
    sent = [send(producer, topic, number) for number in range(3)]
    assert producer.prepare_for_shutdown(5) == 0
    lines = [r.getMessage() for r in caplog.records if "Message delivered to Kafka event bus" in r.getMessage()]
    assert len(lines) == 3
    for metadata in sent:
        (line,) = [text for text in lines if f"message_id={metadata.id}" in text]
        assert f"topic={topic}, partition=" in line and ", offset=" in line
        # The key decoded from its Avro record (the reference printed the raw bytes: key=b'\xc3\x01...').
        assert line.endswith(", key=course-v1:edX+DemoX+Demo_Course"), line
    assert "learner1@example.com" not in caplog.text and "Learner 1" not in caplog.text


def test_audit_log__disabled_by_setting(bus, topic, settings, caplog):
    """EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED=False silences the per-event lines."""
    settings.EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED = False
    caplog.set_level(logging.INFO, logger="edx_event_bus_kafka")
    producer = create_producer()
    send(producer, topic)
    producer.prepare_for_shutdown(5)
    assert producer.stats.snapshot()["delivered"] == 1
    assert "Message delivered" not in caplog.text


def test_create_producer__unconfigured_returns_none_with_warning(caplog):
    """Without bootstrap servers create_producer() warns and returns None (openedx-events then no-ops)."""
    assert create_producer() is None
    assert "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set" in caplog.text


def test_create_producer__reuses_one_producer_per_process(bus):
    """Repeated calls return the same producer, on one client."""
    assert create_producer() is create_producer()
    assert len(bus.producers) == 1


def test_create_producer__invalid_settings_raise_configuration_error(settings):
    """Invalid settings fail producer creation with the settings error."""
    settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = "kafka:port"
    with pytest.raises(ConfigurationError, match="EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"):
        create_producer()


def test_fatal_client_error__client_is_rebuilt_held_events_are_logged_and_later_ones_flow(bus, topic, caplog):
    """After a fatal error the producer builds a new client; what the dead one held fails and is logged."""
    producer = create_producer()
    with bus.outage():
        held = send(producer, topic, 1)
        bus.raise_client_error(KafkaError(KafkaError._FATAL, "simulated sequence error", fatal=True), kind="producer")
        producer.client.poll(0)  # serves the error callback, as the poll thread does
        later = send(producer, topic, 2)
    assert len(bus.producers) == 2
    assert producer.prepare_for_shutdown(5) == 0
    assert ids(bus, topic) == [str(later.id).encode()]
    assert "Fatal Kafka producer error, the client will be rebuilt" in caplog.text
    (line,) = failure_lines(caplog)
    assert "reason=_fatal" in line and f"event_id={held.id}" in line
    assert producer.stats.snapshot()["failures_by_reason"] == {"_fatal": 1}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad_key_path", "serialization"),
        ("data_does_not_fit_schema", "serialization"),
        ("oversized_message", "produce"),
    ],
)
def test_bad_event__logged_counted_and_later_events_flow(bus, topic, settings, caplog, case, reason):
    """A bad event never raises: one error line with full context, a failure count, and the next event goes out."""
    settings.EVENT_BUS_KAFKA_PRODUCER_CONFIG = {"message.max.bytes": 2000}
    producer = create_producer()
    good = enrollment_event_data(1)
    if case == "bad_key_path":
        metadata = send(producer, topic, key_field="enrollment.course.no_such_field")
    elif case == "data_does_not_fit_schema":
        metadata = send(producer, topic, event_data={"enrollment": attr.evolve(good["enrollment"], mode=12345)})
    else:
        course = attr.evolve(good["enrollment"].course, display_name="x" * 5000)
        metadata = send(producer, topic, event_data={"enrollment": attr.evolve(good["enrollment"], course=course)})
    assert_logged_with_context(caplog, metadata, topic, reason)
    assert producer.stats.snapshot()["failures_by_reason"] == {reason: 1}
    assert telemetry.attributes_named("kafka_producer_error_reason") == [reason]
    assert telemetry.EXCEPTIONS, "the failure is recorded in monitoring"
    later = send(producer, topic, 2)
    assert producer.prepare_for_shutdown(5) == 0
    assert ids(bus, topic) == [str(later.id).encode()]


def test_failed_delivery_report__logged_with_context_and_counted(bus, topic, caplog):
    """A delivery report with an error (the broker refused the write) is logged once with what re-sends it."""
    bus.fail_next_delivery(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS))
    producer = create_producer()
    metadata = send(producer, topic)
    assert producer.prepare_for_shutdown(5) == 0
    assert_logged_with_context(caplog, metadata, topic, "not_enough_replicas")
    assert producer.stats.snapshot()["failed"] == 1 and bus.messages(topic) == []


def test_unreachable_broker__delivery_failure_logged_with_context(bus, settings, caplog):
    """With the broker down, the event fails its delivery report after message.timeout.ms and is logged."""
    settings.EVENT_BUS_KAFKA_PRODUCER_CONFIG = {"message.timeout.ms": 100}
    settings.EVENT_BUS_KAFKA_POLL_INTERVAL_SEC = 0.02
    bus.go_down()
    producer = create_producer()
    metadata = send(producer, "unreachable-topic")
    # The poll thread counts the failure, then logs it: wait for the line itself.
    wait_for(lambda: failure_lines(caplog), timeout=10, what="the delivery failure to be logged")
    assert_logged_with_context(caplog, metadata, "unreachable-topic", "_msg_timed_out")


def test_local_queue_full__waits_once_then_gives_up_on_the_event(bus, topic, caplog):
    """A full local queue is waited out once; full again, the event fails with local_queue_full, logged."""
    producer = create_producer()
    bus.fail_next_produce(BufferError("Local: Queue full"), times=1)
    waited = send(producer, topic, 2)
    bus.fail_next_produce(BufferError("Local: Queue full"), times=2)
    dropped = send(producer, topic, 1)
    assert producer.prepare_for_shutdown(5) == 0
    assert ids(bus, topic) == [str(waited.id).encode()]
    assert_logged_with_context(caplog, dropped, topic, "local_queue_full")


def test_shutdown__unacknowledged_events_are_purged_and_each_logged(bus, topic, caplog):
    """Events the broker did not take by the flush timeout are purged; each is logged for re-sending."""
    producer = create_producer()
    bus.go_down()
    sent = [send(producer, topic, number) for number in (1, 2)]
    assert producer.prepare_for_shutdown(0.1) == 2
    lines = failure_lines(caplog)
    assert len(lines) == 2 and all("reason=_purge_queue" in line for line in lines)
    assert all(any(f"event_id={metadata.id}" in line for line in lines) for metadata in sent)


def test_refusing_broker__flush_gives_up_early_and_says_why(bus, topic, caplog):
    """A broker refusing our credentials ends the shutdown flush at once instead of waiting out its timeout."""
    producer = create_producer()
    bus.refuse_connections()
    send(producer, topic)
    started = time.monotonic()
    assert producer.prepare_for_shutdown(30) == 1
    assert time.monotonic() - started < 10
    assert producer.refusals.reason is not None and "authentication failed" in producer.refusals.reason
    assert "Kafka refused the event bus producer" in caplog.text


def test_send__never_raises_even_for_garbage_arguments(bus, caplog):
    """Arguments that are not even an event still only produce a logged failure."""
    producer = create_producer()
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    producer.send(signal=ENROLLMENT_SIGNAL, topic="t", event_key_field=ENROLLMENT_KEY_FIELD,
                  event_data={"enrollment": object()}, event_metadata=metadata)
    assert producer.stats.snapshot()["failed"] == 1
    assert len(failure_lines(caplog)) == 1
