"""The producer against a real broker and process: the bytes on the wire, with and without a registry, and shutdown.

Delivery modes, audit lines, failures and fatal errors are tested on the in-memory Kafka in
tests/unit/test_producer.py.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import uuid

import fastavro
import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from openedx_events.data import EventsMetadata
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.internal.wire.serialization import registry_client, signal_schema
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support.kafka import read_messages

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
