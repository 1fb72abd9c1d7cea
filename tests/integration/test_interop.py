"""Interoperability with the reference edx-event-bus-kafka 6.x (in its own venv), both directions.

Both sides share the chosen schema registry (``--schema-registry``): the stand-in, or Apicurio
Registry, whose ids and stored texts differ from Confluent's but are the same for both sides.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.internal.wire.records import event_data_to_record
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL
from tests.support.kafka import read_messages
from tests.support.producing import event_data
from tests.support.reference_venv import ensure_reference_venv
from tests.support.workers import Worker

pytestmark = pytest.mark.integration

SCRIPT = str(Path(__file__).resolve().parents[1] / "support" / "reference_script.py")


@pytest.fixture(scope="session")
def reference_python() -> str:
    """The python of .venv-reference (built on first use from requirements/reference.txt)."""
    return str(ensure_reference_venv())


def run_reference(python: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    result = subprocess.run([python, "-I", SCRIPT, *args], capture_output=True, text=True, timeout=timeout,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result



def test_reference_producer_and_ours_write_identical_messages(
    bus_settings, kafka_topic, schema_registry, reference_python, tmp_path, kafka_broker,
):
    """For the same event, metadata and registry, key, value and headers are byte-identical to the reference's."""
    bus_settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = schema_registry.url
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type, source="openedx/reference-service/web")
    ours_topic, theirs_topic = f"{kafka_topic}-ours", f"{kafka_topic}-theirs"
    kafka_broker.create_topics([ours_topic, theirs_topic], partitions=7)  # partitioner matters
    producer = create_producer()
    producer.send(signal=ENROLLMENT_SIGNAL, topic=ours_topic, event_key_field=ENROLLMENT_KEY_FIELD,
                  event_data=event_data(0), event_metadata=metadata)
    assert producer.prepare_for_shutdown(10) == 0
    metadata_file = tmp_path / "metadata.json"
    metadata_file.write_text(json.dumps([json.loads(metadata.to_json())]), encoding="utf-8")
    run_reference(reference_python, "produce", "--bootstrap", bootstrap, "--registry", schema_registry.url,
                  "--topic", theirs_topic, "--count", "1", "--metadata-json", str(metadata_file))
    (ours,) = read_messages(bootstrap, ours_topic, 1)
    (theirs,) = read_messages(bootstrap, theirs_topic, 1)
    # Both register the same schema text, so the registry gives both the same schema ids (ids are
    # global per schema, whatever the subject) and the bytes are identical, framing included.
    assert ours.key() == theirs.key()
    assert ours.value() == theirs.value()
    assert ours.headers() == theirs.headers()
    assert ours.partition() == theirs.partition()
    assert sorted(schema_registry.subjects(kafka_topic)) == sorted([
        f"{ours_topic}-string", f"{ours_topic}-{ENROLLMENT_SIGNAL.event_type}.CloudEvent",
        f"{theirs_topic}-string", f"{theirs_topic}-{ENROLLMENT_SIGNAL.event_type}.CloudEvent",
    ])


def test_reference_consumer_reads_our_messages(bus_settings, kafka_topic, schema_registry, reference_python, tmp_path):
    """The reference consumer, in its own venv, decodes our events into the same data and metadata."""
    bus_settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = schema_registry.url
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    producer = create_producer()
    sent = []
    for number in range(3):
        metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
        producer.send(signal=ENROLLMENT_SIGNAL, topic=kafka_topic, event_key_field=ENROLLMENT_KEY_FIELD,
                      event_data=event_data(number), event_metadata=metadata)
        sent.append(metadata)
    assert producer.prepare_for_shutdown(10) == 0
    out = tmp_path / "reference-received.jsonl"
    run_reference(reference_python, "consume", "--bootstrap", bootstrap, "--registry", schema_registry.url,
                  "--topic", kafka_topic, "--group", f"ref-{uuid.uuid4().hex[:6]}", "--count", "3",
                  "--out", str(out))
    received = {json.loads(line)["metadata"]["id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(received) == {str(m.id) for m in sent}
    for number, metadata in enumerate(sent):
        entry = received[str(metadata.id)]
        assert entry["metadata"] == json.loads(metadata.to_json())
        assert entry["data"] == event_data_to_record(event_data(number))["enrollment"]


def test_our_consumer_reads_reference_messages(bus_settings, kafka_topic, schema_registry, reference_python, tmp_path):
    """Events produced by the reference reach our consume_events receivers with the same data and metadata."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    result = run_reference(reference_python, "produce", "--bootstrap", bootstrap, "--registry", schema_registry.url,
                           "--topic", kafka_topic, "--count", "3")
    sent = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, f"ours-{uuid.uuid4().hex[:6]}",
                                   settings={"EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": schema_registry.url}).start()
    try:
        worker.wait_for_entries(lambda e: len([x for x in e if x["phase"] == "done"]) >= 3, timeout=40)
    finally:
        assert worker.stop() == 0, worker.output()
    done = {e["id"]: e for e in worker.entries("done")}
    for item in sent:
        entry = done[item["metadata"]["id"]]
        assert entry["metadata"] == item["metadata"]
        assert entry["data"] == event_data_to_record(event_data(item["number"]))
