"""The producer against the embedded broker: wire format, delivery modes, failures, shutdown."""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import uuid

import fastavro
import pytest
from confluent_kafka import KafkaError
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from django.db import transaction
from openedx_events.data import EventsMetadata
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.internal.errors import ConfigurationError
from edx_event_bus_kafka.internal.wire.serialization import registry_client, signal_schema
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support.kafka import read_messages, read_nothing_more

pytestmark = pytest.mark.integration


def send(producer, topic, number=1, **overrides):
    """Send one enrollment event; returns its metadata."""
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    data = overrides.pop("event_data", None) or enrollment_event_data(number)
    key_field = overrides.pop("key_field", ENROLLMENT_KEY_FIELD)
    producer.send(signal=ENROLLMENT_SIGNAL, topic=topic, event_key_field=key_field, event_data=data,
                  event_metadata=metadata)
    return metadata


def test_send__headers_carry_metadata_in_reference_encoding(bus_settings, kafka_topic):
    """Each of the ten CloudEvents headers is present once, UTF-8, in the reference's order."""
    producer = create_producer()
    metadata = send(producer, kafka_topic)
    assert producer.prepare_for_shutdown(10) == 0
    (message,) = read_messages(bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, kafka_topic, 1)
    assert message.headers() == [
        ("ce_specversion", b"1.0"),
        ("content-type", b"application/avro"),
        ("ce_datacontenttype", b"application/avro"),
        ("ce_type", b"org.openedx.learning.course.enrollment.changed.v1"),
        ("ce_id", str(metadata.id).encode()),
        ("ce_source", b"openedx/test-service/web"),
        ("ce_time", metadata.time.isoformat().encode()),
        ("ce_minorversion", b"0"),
        ("sourcehost", metadata.sourcehost.encode()),
        ("sourcelib", ".".join(map(str, metadata.sourcelib)).encode()),
    ]


def test_send__without_registry_uses_single_object_encoding(bus_settings, kafka_topic):
    """Without a registry, key and value are Avro single-object encoded with the schema fingerprint."""
    producer = create_producer()
    data = enrollment_event_data(5)
    send(producer, kafka_topic, event_data=data)
    producer.prepare_for_shutdown(10)
    (message,) = read_messages(bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, kafka_topic, 1)
    value = message.value()
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == signal_schema(ENROLLMENT_SIGNAL).fingerprint
    # The body is exactly what openedx-events' own serializer writes.
    assert value[10:] == serialize_event_data_to_bytes(data, ENROLLMENT_SIGNAL)
    key = message.key()
    assert key[:2] == b"\xc3\x01"
    assert fastavro.schemaless_reader(io.BytesIO(key[10:]), "string") == str(data["enrollment"].course.course_key)


@pytest.mark.parametrize("registry_kind", ["mock", "http"])
def test_send__with_registry_confluent_deserializer_reads_key_and_value(bus_settings, kafka_topic, registry_kind,
                                                                        request):
    """With a registry, key and value decode with confluent-kafka's AvroDeserializer; subjects as the reference.

    ``mock``: confluent-kafka's in-process mock registry; ``http``: the chosen registry over HTTP (the
    stand-in, or the session's Apicurio Registry, which holds other tests' subjects too).
    """
    bus_settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = (
        f"mock://{uuid.uuid4().hex}" if registry_kind == "mock" else request.getfixturevalue("schema_registry").url)
    bus_settings.EVENT_BUS_TOPIC_PREFIX = "stage"
    full_topic = f"stage-{kafka_topic}"
    producer = create_producer()
    data = enrollment_event_data(9)
    send(producer, kafka_topic, event_data=data)
    assert producer.prepare_for_shutdown(10) == 0
    (message,) = read_messages(bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, full_topic, 1)

    client = registry_client()
    assert sorted(subject for subject in client.get_subjects() if subject.startswith(full_topic)) == sorted([
        f"{full_topic}-string",
        f"{full_topic}-org.openedx.learning.course.enrollment.changed.v1.CloudEvent",
    ])
    value = AvroDeserializer(client)(message.value(), SerializationContext(full_topic, MessageField.VALUE))
    key = AvroDeserializer(client)(message.key(), SerializationContext(full_topic, MessageField.KEY))
    assert key == "course-v1:edX+DemoX+Demo_Course"
    assert value["enrollment"]["user"]["pii"]["username"] == "learner9"
    assert value["enrollment"]["creation_date"] == data["enrollment"].creation_date.isoformat()


@pytest.mark.django_db(transaction=True)
def test_on_commit__published_only_after_commit(bus_settings, kafka_topic):
    """In on_commit mode an event sent inside a transaction is handed to Kafka when it commits."""
    producer = create_producer()
    with transaction.atomic():
        metadata = send(producer, kafka_topic)
        assert producer.stats.snapshot()["sent"] == 0
    assert producer.stats.snapshot()["sent"] == 1
    producer.prepare_for_shutdown(10)
    (message,) = read_messages(bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, kafka_topic, 1)
    assert dict(message.headers())["ce_id"] == str(metadata.id).encode()


@pytest.mark.django_db(transaction=True)
def test_on_commit__rolled_back_transaction_publishes_nothing(bus_settings, kafka_topic):
    """An event of a rolled-back transaction is never published."""
    producer = create_producer()
    with pytest.raises(RuntimeError), transaction.atomic():
        send(producer, kafka_topic, 1)
        raise RuntimeError("roll back")
    kept = send(producer, kafka_topic, 2)  # outside any transaction: published at once
    producer.prepare_for_shutdown(10)
    messages = read_nothing_more(bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, kafka_topic, 1)
    assert [dict(m.headers())["ce_id"] for m in messages] == [str(kept.id).encode()]
    assert producer.stats.snapshot()["sent"] == 1


@pytest.mark.django_db(transaction=True)
def test_immediate_override__publishes_inside_transaction(bus_settings, kafka_topic):
    """A per-event-type override to immediate publishes before the transaction ends, as the reference does."""
    bus_settings.EVENT_BUS_KAFKA_DELIVERY_MODE_OVERRIDES = {ENROLLMENT_SIGNAL.event_type: "immediate"}
    producer = create_producer()
    with transaction.atomic():
        send(producer, kafka_topic)
        assert producer.stats.snapshot()["sent"] == 1


def test_send_event__openedx_events_handler_reaches_kafka(bus_settings, kafka_broker):
    """COURSE_ENROLLMENT_CHANGED.send_event() is published via EVENT_BUS_PRODUCER_CONFIG and create_producer."""
    prefix = f"p{uuid.uuid4().hex[:8]}"
    bus_settings.EVENT_BUS_TOPIC_PREFIX = prefix
    full_topic = f"{prefix}-learning-course-enrollment"
    kafka_broker.create_topics([full_topic])
    ENROLLMENT_SIGNAL.send_event(**enrollment_event_data(4))
    create_producer().prepare_for_shutdown(10)
    (message,) = read_messages(bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, full_topic, 1)
    assert dict(message.headers())["ce_type"] == ENROLLMENT_SIGNAL.event_type.encode()
    assert message.value()[10:] == serialize_event_data_to_bytes(enrollment_event_data(4), ENROLLMENT_SIGNAL)


def test_audit_log__one_line_per_delivered_event_without_event_data(bus_settings, kafka_topic, caplog):
    """Each delivered event logs topic, partition, offset, message id and key at INFO, never the data."""
    caplog.set_level(logging.INFO, logger="edx_event_bus_kafka")
    producer = create_producer()
    sent = [send(producer, kafka_topic, n) for n in range(3)]
    producer.prepare_for_shutdown(10)
    lines = [r.getMessage() for r in caplog.records if "Message delivered to Kafka event bus" in r.getMessage()]
    assert len(lines) == 3
    for metadata in sent:
        (line,) = [text for text in lines if f"message_id={metadata.id}" in text]
        assert f"topic={kafka_topic}, partition=" in line and ", offset=" in line and "key=" in line
    assert "learner1@example.com" not in caplog.text and "Learner 1" not in caplog.text


def test_audit_log__disabled_by_setting(bus_settings, kafka_topic, caplog):
    """EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED=False silences the per-event lines."""
    bus_settings.EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED = False
    caplog.set_level(logging.INFO, logger="edx_event_bus_kafka")
    producer = create_producer()
    send(producer, kafka_topic)
    producer.prepare_for_shutdown(10)
    assert producer.stats.snapshot()["delivered"] == 1
    assert "Message delivered" not in caplog.text


def test_create_producer__unconfigured_returns_none_with_warning(caplog):
    """Without bootstrap servers create_producer() warns and returns None (openedx-events then no-ops)."""
    assert create_producer() is None
    assert "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set" in caplog.text


def test_create_producer__reuses_one_producer_per_process(bus_settings):
    """Repeated calls return the same producer."""
    assert create_producer() is create_producer()


def test_create_producer__invalid_settings_raise_configuration_error(settings):
    """Invalid settings fail producer creation with the settings error."""
    settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = "kafka:port"
    with pytest.raises(ConfigurationError, match="EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"):
        create_producer()


def test_fatal_client_error__client_is_rebuilt_and_events_keep_flowing(bus_settings, kafka_topic):
    """After a fatal librdkafka error the producer builds a new client and later events are delivered.

    The fatal error itself is injected through the error callback: provoking a real one needs
    broker-side idempotence faults that the embedded broker cannot produce on demand.
    """
    producer = create_producer()
    old_client = producer.client
    producer._clients._client_error(KafkaError(KafkaError._FATAL, "simulated fatal error", fatal=True))
    send(producer, kafka_topic)
    assert producer.client is not old_client
    assert producer.prepare_for_shutdown(10) == 0
    assert producer.stats.snapshot()["delivered"] == 1


def run_producer_script(bus_settings, topic: str, *args: str, extra_settings: dict | None = None):
    """Start tests/support/produce_script.py as a real process producing to ``topic``."""
    env = {
        **os.environ,
        "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS,
        "EVENT_BUS_SETTINGS_JSON": json.dumps(extra_settings or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.produce_script", topic, *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


LONG_LINGER = {"EVENT_BUS_KAFKA_PRODUCER_CONFIG": {"linger.ms": 60000}}


def test_shutdown__normal_exit_flushes_buffered_events(bus_settings, kafka_topic):
    """Events still buffered (60 s linger) when the process exits normally are delivered by the exit flush."""
    process = run_producer_script(bus_settings, kafka_topic, "--count", "5", extra_settings=LONG_LINGER)
    output, _ = process.communicate(timeout=40)
    assert process.returncode == 0, output
    messages = read_messages(bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, kafka_topic, 5)
    assert len(messages) == 5


def test_shutdown__sigterm_flushes_then_terminates(bus_settings, kafka_topic):
    """On SIGTERM buffered events are flushed, then the default action still terminates the process."""
    process = run_producer_script(bus_settings, kafka_topic, "--count", "4", "--wait", extra_settings=LONG_LINGER)
    line = wait_for(process.stdout.readline, timeout=30, what="the script to send its events")
    assert "sent 4" in line, line
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM
    assert len(read_messages(bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, kafka_topic, 4)) == 4
