"""The Schema Registry stand-in answers confluent-kafka's real client, serializer and deserializer."""
from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.support.schema_registry import SchemaRegistryStandIn

REPO_ROOT = Path(__file__).resolve().parents[2]
FIELDS: list[dict[str, Any]] = [{"name": "user_id", "type": "int"}, {"name": "course", "type": "string"}]


def _record(fields: list[dict[str, Any]], name: str = "Enrollment") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "org.openedx.test", "fields": fields})


@pytest.fixture
def registry() -> Iterator[SchemaRegistryStandIn]:
    with SchemaRegistryStandIn() as standin:
        yield standin


@pytest.fixture
def client(registry: SchemaRegistryStandIn) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry.url}) as sr_client:
        yield sr_client


def _post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST like the client does, returning (status, decoded body) even for error statuses."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_registered_schema_is_fetched_by_id_from_another_client(registry, client):
    """A registered schema's id resolves to the same schema for a client with an empty cache."""
    schema_id = client.register_schema("topic-value", Schema(_record(FIELDS), "AVRO"))
    with SchemaRegistryClient({"url": registry.url}) as other:
        fetched = other.get_schema(schema_id)
    assert json.loads(fetched.schema_str) == json.loads(_record(FIELDS))
    assert fetched.schema_type == "AVRO"


def test_same_schema_in_two_subjects_shares_one_id(client):
    """Schema ids are global: the same schema (even reformatted) gets one id in every subject."""
    first = client.register_schema("a-value", Schema(_record(FIELDS)))
    reformatted = json.dumps(json.loads(_record(FIELDS)), indent=4)
    second = client.register_schema("b-value", Schema(reformatted))
    other = client.register_schema("b-value", Schema(_record([*FIELDS, {"name": "x", "type": "int", "default": 0}])))
    assert first == second
    assert other != first


def test_reregistering_returns_existing_id_without_a_new_version(registry, client):
    """Registering an already-registered schema again returns its id and adds no version."""
    schema_id = client.register_schema("topic-value", Schema(_record(FIELDS)))
    with SchemaRegistryClient({"url": registry.url}) as other:  # a fresh cache, so the request reaches the server
        assert other.register_schema("topic-value", Schema(_record(FIELDS))) == schema_id
    assert client.get_versions("topic-value") == [1]
    assert registry.subjects() == {"topic-value": [_record(FIELDS)]}


def test_lookup_finds_the_version_and_reports_confluent_error_codes(client):
    """Lookup returns subject, version and id; unknown schemas and subjects get 40403 and 40401."""
    schema_id = client.register_schema("topic-value", Schema(_record(FIELDS)))
    found = client.lookup_schema("topic-value", Schema(_record(FIELDS)))
    assert (found.subject, found.version, found.schema_id) == ("topic-value", 1, schema_id)
    with pytest.raises(SchemaRegistryError) as unknown_schema:
        client.lookup_schema("topic-value", Schema(_record(FIELDS[:1])))
    with pytest.raises(SchemaRegistryError) as unknown_subject:
        client.lookup_schema("nobody-value", Schema(_record(FIELDS)))
    assert (unknown_schema.value.http_status_code, unknown_schema.value.error_code) == (404, 40403)
    assert (unknown_subject.value.http_status_code, unknown_subject.value.error_code) == (404, 40401)


def test_latest_version_is_the_newest_registration(client):
    """After a second, compatible registration, "latest" is version 2 and version 1 is still readable."""
    client.register_schema("topic-value", Schema(_record(FIELDS)))
    evolved = _record([*FIELDS, {"name": "mode", "type": "string", "default": "audit"}])
    new_id = client.register_schema("topic-value", Schema(evolved))
    latest = client.get_latest_version("topic-value")
    assert (latest.version, latest.schema_id) == (2, new_id)
    assert json.loads(latest.schema.schema_str) == json.loads(evolved)
    assert client.get_version("topic-value", 1).schema_id != new_id


def test_subject_names_with_slashes_and_spaces_survive_url_encoding(client):
    """Subjects are URL-decoded per path segment, so "/" and spaces inside a name round-trip."""
    schema_id = client.register_schema("team a/topic-value", Schema(_record(FIELDS)))
    assert client.get_subjects() == ["team a/topic-value"]
    assert client.get_latest_version("team a/topic-value").schema_id == schema_id


def test_deleting_a_subject_is_soft_then_permanent(registry, client):
    """A deleted subject disappears but stays listable with deleted=True until permanently deleted."""
    schema_id = client.register_schema("topic-value", Schema(_record(FIELDS)))
    assert client.delete_subject("topic-value") == [1]
    assert client.get_subjects() == []
    assert client.get_subjects(deleted=True) == ["topic-value"]
    assert client.delete_subject("topic-value", permanent=True) == [1]
    assert client.get_subjects(deleted=True) == []
    assert registry.subjects() == {}
    with SchemaRegistryClient({"url": registry.url}) as other:  # ids stay readable, as old messages need them
        assert json.loads(other.get_schema(schema_id).schema_str) == json.loads(_record(FIELDS))


def test_concurrent_registrations_from_many_clients_agree_on_one_id(registry):
    """Parallel registrations of one schema under different subjects all get the same id."""
    def register(number: int) -> int:
        with SchemaRegistryClient({"url": registry.url}) as own:
            return int(own.register_schema(f"topic{number}-value", Schema(_record(FIELDS))))

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(register, range(16)))
    assert set(ids) == {1}
    assert len(registry.subjects()) == 16


def test_serializer_and_deserializer_in_separate_clients_round_trip_a_record(registry):
    """A record serialized via one client deserializes via another, and repeats are served from caches."""
    context = SerializationContext("enrollments", MessageField.VALUE)
    strategy = {"subject.name.strategy": topic_record_subject_name_strategy}
    record = {"user_id": 7, "course": "course-v1:edX+DemoX+Demo"}
    with SchemaRegistryClient({"url": registry.url}) as producer_side, \
            SchemaRegistryClient({"url": registry.url}) as consumer_side:
        serializer = AvroSerializer(producer_side, _record(FIELDS), conf=strategy)
        deserializer = AvroDeserializer(consumer_side, conf=strategy)
        payload = serializer(record, context)
        assert deserializer(payload, context) == record
        requests_after_first = registry.request_count
        assert deserializer(serializer(record, context), context) == record
    assert registry.request_count == requests_after_first
    assert list(registry.subjects()) == ["enrollments-org.openedx.test.Enrollment"]


@pytest.mark.parametrize(("new_fields", "compatible"), [
    pytest.param([*FIELDS, {"name": "mode", "type": "string", "default": "audit"}], True, id="add-with-default"),
    pytest.param([*FIELDS, {"name": "mode", "type": "string"}], False, id="add-without-default"),
    pytest.param(FIELDS[:1], True, id="remove-field"),
    pytest.param([FIELDS[0], {"name": "course", "type": "int"}], False, id="string-to-int"),
    pytest.param([{"name": "user_id", "type": "long"}, FIELDS[1]], True, id="int-to-long"),
])
def test_backward_compatibility_follows_avro_resolution(client, new_fields, compatible):
    """Under BACKWARD, the new schema must read old data: defaults, removals and promotions decide."""
    client.register_schema("topic-value", Schema(_record(FIELDS)))
    assert client.test_compatibility("topic-value", Schema(_record(new_fields))) is compatible


def test_incompatible_registration_is_rejected_and_explained(registry, client):
    """An incompatible schema is refused with 409, and verbose=true names the offending field."""
    client.register_schema("topic-value", Schema(_record(FIELDS)))
    changed = _record([FIELDS[0], {"name": "course", "type": "int"}])
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("topic-value", Schema(changed))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    status, verdict = _post_json(
        f"{registry.url}/compatibility/subjects/topic-value/versions/latest?verbose=true", {"schema": changed},
    )
    assert status == 200
    assert verdict["is_compatible"] is False
    assert any("/fields/course" in message and "TYPE_MISMATCH" in message for message in verdict["messages"])


def test_compatibility_levels_and_missing_subject(client):
    """FORWARD and FULL change the verdict, NONE accepts anything, and an unknown subject is 40401."""
    client.register_schema("topic-value", Schema(_record(FIELDS)))
    added_required = Schema(_record([*FIELDS, {"name": "mode", "type": "string"}]))
    client.set_compatibility("topic-value", "FORWARD")
    assert client.test_compatibility("topic-value", added_required) is True
    client.set_compatibility("topic-value", "FULL")
    assert client.test_compatibility("topic-value", added_required) is False
    client.set_compatibility("topic-value", "NONE")
    assert client.test_compatibility("topic-value", Schema('"string"')) is True
    assert client.get_compatibility() == "BACKWARD"
    with pytest.raises(SchemaRegistryError) as missing:
        client.test_compatibility("nobody-value", added_required)
    assert missing.value.error_code == 40401


def test_invalid_avro_is_rejected_with_42201(client):
    """A schema that is not valid Avro (or not JSON) is refused with 422 / 42201."""
    for text in ('{"type": "record", "name": "Broken", "fields": [{"name": "x"}]}', "{not json"):
        with pytest.raises(SchemaRegistryError) as invalid:
            client.register_schema("topic-value", Schema(text))
        assert (invalid.value.http_status_code, invalid.value.error_code) == (422, 42201)


def _read_line(stream: Any, timeout: float) -> str:
    """One line from a child's stdout, failing after ``timeout`` seconds instead of blocking forever."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if select.select([stream], [], [], remaining)[0]:
            return str(stream.readline())
    raise TimeoutError(f"no line within {timeout} s")


@pytest.mark.integration
def test_runs_as_a_process_until_sigterm():
    """``python -m tests.support.schema_registry --port 0`` announces its URL, serves, and exits 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.schema_registry", "--port", "0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = _read_line(process.stdout, timeout=20)
        assert line.startswith("schema registry stand-in ready on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        with SchemaRegistryClient({"url": url}) as remote:
            schema_id = remote.register_schema("proc-value", Schema(_record(FIELDS)))
            assert remote.get_subjects() == ["proc-value"]
        assert schema_id == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()
