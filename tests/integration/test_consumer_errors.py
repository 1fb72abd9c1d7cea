"""Unusable messages, bad configuration and stuck loops: nothing lost, clear errors, meaningful exits."""
from __future__ import annotations

import threading
import uuid

import pytest
from confluent_kafka import KafkaError, Producer
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import KafkaEventConsumer
from edx_event_bus_kafka.internal.runtime.worker import EXIT_CONFIG, EXIT_FATAL, EXIT_OK, EXIT_TOO_MANY_ERRORS
from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import encoder_for, signal_schema
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support.kafka import read_messages
from tests.support.workers import Worker, fast_worker_settings

pytestmark = pytest.mark.integration

OPENEDX_EVENTS_COMMAND = [
    "-c",
    "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings'); import django; "
    "django.setup(); from django.core.management import call_command; "
    "from openedx_events.management.commands.consume_events import Command; "
    "call_command(Command(), *sys.argv[1:])",
]


def good_message(number: int = 1) -> tuple[bytes, bytes, list]:
    """Key, value and headers of a valid event, encoded as our producer does (no registry)."""
    data = enrollment_event_data(number)
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    key, value = encoder_for(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, "any").encode(data)
    return key, value, headers_from_metadata(metadata)


def without(headers: list, name: str) -> list:
    return [(k, v) for k, v in headers if k != name]


def unusable_messages() -> dict[str, tuple[bytes, bytes | None, list]]:
    """One raw message per kind of unusable input, with the reason the consumer must give."""
    key, value, headers = good_message()
    fingerprint = signal_schema(ENROLLMENT_SIGNAL).fingerprint
    unknown_type = [(k, b"org.openedx.nothing.v1" if k == "ce_type" else v) for k, v in headers]
    return {
        "missing required header 'ce_id'": (key, value, without(headers, "ce_id")),
        "missing required header 'ce_type'": (key, value, without(headers, "ce_type")),
        "header 'ce_id' appears 2 times": (key, value, [*headers, ("ce_id", b"another-id")]),
        "unknown event type 'org.openedx.nothing.v1'": (key, value, unknown_type),
        "cannot be decoded": (key, b"\xc3\x01" + fingerprint + b"\xff\xff\xff", headers),
        "unknown schema fingerprint 0102030405060708": (key, b"\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08", headers),
        "message has no value": (key, None, headers),
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL is not set": (key, b"\x00\x00\x00\x00\x07" + value[10:], headers),
        "neither registry nor single-object Avro": (key, b'{"json": true}', headers),
        "header 'ce_time' has an invalid value": (key, value, [(k, b"yesterday" if k == "ce_time" else v)
                                                             for k, v in headers]),
    }


def test_unusable_messages__each_dead_lettered_with_reason_and_loop_goes_on(bus_settings, kafka_topic, tmp_path):
    """Every kind of unusable raw message is dead-lettered (not lost, no crash), then a good one is processed."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = f"g-{uuid.uuid4().hex[:6]}"
    cases = unusable_messages()
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for key, value, headers in cases.values():
        producer.produce(kafka_topic, key=key, value=value, headers=headers, partition=0)
    good_key, good_value, good_headers = good_message(2)
    producer.produce(kafka_topic, key=good_key, value=good_value, headers=good_headers, partition=0)
    assert producer.flush(10) == 0

    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group).start()
    try:
        worker.wait_for_entries(lambda e: any(x["phase"] == "done" for x in e), timeout=40)
        dead = read_messages(bootstrap, f"{kafka_topic}-{group}-dead-letter", len(cases), timeout=30)
    finally:
        assert worker.stop() == 0, worker.output()
    assert len(dead) == len(cases)
    for (reason, (key, value, headers)), letter in zip(cases.items(), dead, strict=True):
        provenance = dict(letter.headers())
        assert provenance["dead_letter_error_class"] == b"edx_event_bus_kafka.internal.errors.UnusableMessageError"
        assert reason.encode() in provenance["dead_letter_error_message"], (reason, provenance)
        assert provenance["dead_letter_attempts"] == b"1"  # unusable messages are not retried
        assert letter.key() == key and letter.value() == value
        assert letter.headers()[: len(headers)] == headers
    assert "Error consuming event from Kafka" in worker.output()


def test_dead_letter_topic_not_writable__message_is_not_skipped(bus_settings, kafka_topic, tmp_path):
    """When the dead letter cannot be written the worker keeps retrying, never commits, and exits 3 at the limit."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = f"g-{uuid.uuid4().hex[:6]}"
    key, value, headers = good_message()
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    producer.produce(kafka_topic, key=key, value=value, headers=without(headers, "ce_id"))
    producer.flush(10)
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, settings={
        "EVENT_BUS_KAFKA_DEAD_LETTER_TOPIC": "{topic} has spaces and is not a valid topic name",
        "EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT": 3,
    }).start()
    assert worker.wait(40) == EXIT_TOO_MANY_ERRORS, worker.output()
    assert "Could not dead-letter" in worker.output()
    assert "Too many consecutive errors" in worker.output()
    from tests.integration.test_consumer import committed_offsets

    assert all(offset < 0 for offset in committed_offsets(bootstrap, group, kafka_topic).values())


def test_receiver_errors__consecutive_errors_limit_exits_3_without_committing(bus_settings, kafka_topic, tmp_path):
    """EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT ends a stuck worker with status 3; nothing is skipped."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = f"g-{uuid.uuid4().hex[:6]}"
    key, value, headers = good_message()
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    producer.produce(kafka_topic, key=key, value=value, headers=headers)
    producer.flush(10)
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, mode="always_fail", settings={
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS": 10, "EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT": 2,
    }).start()
    assert worker.wait(40) == EXIT_TOO_MANY_ERRORS, worker.output()
    assert len(worker.entries("start")) == 2
    from tests.integration.test_consumer import committed_offsets

    assert all(offset < 0 for offset in committed_offsets(bootstrap, group, kafka_topic).values())


@pytest.mark.parametrize("command", ["ours", "openedx_events"])
@pytest.mark.parametrize(
    ("args", "worker_settings", "expected"),
    [
        ([], {"EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": -1}, "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT=-1"),
        (["--extra", '{"no_such_option": 1}'], {}, "unknown consumer option(s) no_such_option"),
        (["--extra", '{"offset_time": "2026-11-28T10:00:00"}'], {}, "has no timezone"),
    ],
    ids=["bad-setting", "unknown-option", "naive-offset-time"],
)
def test_bad_configuration__exits_2_naming_the_problem_with_either_command(
    bus_settings, tmp_path, command, args, worker_settings, expected,
):
    """Bad settings or options exit with status 2 and a message naming them, under either consume_events."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    base = ["-t", "some-topic", "-g", "some-group", *args]
    argv = ["manage.py", "consume_events", *base] if command == "ours" else [*OPENEDX_EVENTS_COMMAND, *base]
    worker = Worker(tmp_path, bootstrap, argv, settings=worker_settings).start()
    assert worker.wait(30) == EXIT_CONFIG, worker.output()
    assert expected in worker.output()


@pytest.mark.parametrize("command", ["ours", "openedx_events"])
def test_kill_switch__exits_zero_at_once_without_consuming(bus_settings, kafka_topic, tmp_path, command):
    """EVENT_BUS_KAFKA_CONSUMERS_ENABLED=False makes the worker log and exit 0 without consuming."""
    base = ["-t", kafka_topic, "-g", "g"]
    argv = ["manage.py", "consume_events", *base] if command == "ours" else [*OPENEDX_EVENTS_COMMAND, *base]
    worker = Worker(tmp_path, bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, argv,
                    settings={"EVENT_BUS_KAFKA_CONSUMERS_ENABLED": False}).start()
    assert worker.wait(30) == EXIT_OK
    assert "Kafka consumers not enabled, exiting." in worker.output()


def test_openedx_events_command__consumes_like_ours(bus_settings, kafka_topic, tmp_path):
    """openedx-events' consume_events command (through EVENT_BUS_CONSUMER) runs our consumer the same way."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    key, value, headers = good_message()
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    producer.produce(kafka_topic, key=key, value=value, headers=headers)
    producer.flush(10)
    worker = Worker(tmp_path, bootstrap, [*OPENEDX_EVENTS_COMMAND, "-t", kafka_topic, "-g", "oe-group"]).start()
    try:
        worker.wait_for_entries(lambda e: any(x["phase"] == "done" for x in e))
    finally:
        assert worker.stop() == 0, worker.output()


def start_in_thread(settings, topic: str, group: str) -> tuple[KafkaEventConsumer, threading.Thread, list[int]]:
    """Run a consumer's loop in a thread (fast test settings); its exit status lands in the list."""
    for name, value in fast_worker_settings().items():
        setattr(settings, name, value)
    consumer = KafkaEventConsumer(topic, group)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(consumer.run()))
    thread.start()
    wait_for(lambda: consumer.consumer is not None, timeout=10, what="the consumer to start")
    return consumer, thread, result


def test_fatal_client_error__run_returns_exit_1(bus_settings, kafka_topic, settings):
    """A fatal librdkafka error stops the loop with status 1 so the supervisor restarts the worker.

    The fatal error is injected through the client's error callback; a real one needs broker faults
    the embedded broker cannot produce on demand.
    """
    consumer, thread, result = start_in_thread(settings, kafka_topic, "fatal-group")
    consumer._on_client_error(KafkaError(KafkaError._FATAL, "simulated fatal error", fatal=True))
    thread.join(20)
    assert result == [EXIT_FATAL]


def test_stop__run_returns_zero_and_closes(bus_settings, kafka_topic, settings):
    """stop() ends an idle loop promptly with status 0."""
    consumer, thread, result = start_in_thread(settings, kafka_topic, "stop-group")
    consumer.stop()
    thread.join(10)
    assert result == [EXIT_OK]


def test_log_and_skip_policy__failed_message_is_logged_skipped_and_committed(bus_settings, kafka_topic, tmp_path):
    """With the reference's log_and_skip policy a failing event is logged and skipped: no dead letter."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = f"g-{uuid.uuid4().hex[:6]}"
    key, value, headers = good_message()
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    producer.produce(kafka_topic, key=key, value=value, headers=headers, partition=0)
    producer.flush(10)
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, mode="always_fail", settings={
        "EVENT_BUS_KAFKA_CONSUMER_FAILURE_POLICY": "log_and_skip", "EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS": 2,
    }).start()
    try:
        from tests.integration.test_consumer import committed_offsets

        wait_for(lambda: committed_offsets(bootstrap, group, kafka_topic)[0] == 1, timeout=30,
                 what="the skipped message's offset to be committed")
    finally:
        assert worker.stop() == 0, worker.output()
    assert len(worker.entries("start")) == 2
    assert "failure policy log_and_skip" in worker.output()
    assert "Dead-lettered" not in worker.output()


def test_monitoring__reference_custom_attributes_are_recorded(bus_settings, kafka_topic, settings):
    """Each consumed message sets the reference's custom attributes (topic, partition, offset, id, type)."""
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

    from tests.support import telemetry

    for name, value in fast_worker_settings().items():
        setattr(settings, name, value)
    key, value, headers = good_message()
    producer = Producer({"bootstrap.servers": bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, "log_level": 0})
    producer.produce(kafka_topic, key=key, value=value, headers=headers, partition=2)
    producer.flush(10)
    received: list = []
    consumer = KafkaEventConsumer(kafka_topic, f"monitor-{uuid.uuid4().hex[:6]}")

    def receiver(**kwargs):
        received.append(kwargs["metadata"])
        consumer.stop()

    COURSE_ENROLLMENT_CHANGED.connect(receiver, weak=False)
    try:
        assert consumer.run() == EXIT_OK
    finally:
        COURSE_ENROLLMENT_CHANGED.disconnect(receiver)
    (metadata,) = received
    assert kafka_topic in telemetry.attributes_named("kafka_topic")
    assert telemetry.attributes_named("kafka_partition") == [2]
    assert telemetry.attributes_named("kafka_offset") == [0]
    assert telemetry.attributes_named("kafka_message_id") == [str(metadata.id)]
    assert telemetry.attributes_named("kafka_event_type") == [ENROLLMENT_SIGNAL.event_type]
    assert telemetry.attributes_named("kafka_received_message") == [True]
