"""check_event_schemas against the chosen schema registry: new, identical, compatible, incompatible, errors.

Each test has its own topic prefix and looks only at its subjects, so they also run on the one
Apicurio Registry of a ``--schema-registry=apicurio`` session. Where the registries differ: the
stand-in keeps the texts it was sent, Apicurio returns canonical forms (keys come back as
``"string"``), so texts are compared exactly on the stand-in and as parsed schemas on Apicurio
(:func:`~tests.support.registries.comparable`); and only the stand-in explains an incompatibility.
"""
from __future__ import annotations

import copy
import functools
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import RegisteredSchema, Schema, SchemaRegistryClient
from django.core.management import CommandError, call_command
from openedx_events.learning.signals import SESSION_LOGIN_COMPLETED

from edx_event_bus_kafka.internal.operations import schema_check
from edx_event_bus_kafka.internal.wire import serialization
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL
from tests.support.registries import comparable
from tests.support.schema_registry import SchemaRegistryStandIn
from tests.support.workers import ROOT

pytestmark = pytest.mark.integration

ENROLLMENT_TOPIC = "learning-course-enrollment"
LOGIN_TOPIC = "user-login"
LOGIN_KEY_FIELD = "user.id"
PRODUCER_CONFIG: dict[str, Any] = {
    ENROLLMENT_SIGNAL.event_type: {ENROLLMENT_TOPIC: {"event_key_field": ENROLLMENT_KEY_FIELD, "enabled": True},
                                   "disabled-topic": {"event_key_field": ENROLLMENT_KEY_FIELD, "enabled": False}},
    SESSION_LOGIN_COMPLETED.event_type: {LOGIN_TOPIC: {"event_key_field": LOGIN_KEY_FIELD, "enabled": True}},
}


@pytest.fixture
def prefix() -> str:
    return f"check-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def schema_settings(settings, schema_registry, prefix):
    """Django settings for the chosen registry, a unique topic prefix and two configured event types."""
    settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = schema_registry.url
    settings.EVENT_BUS_TOPIC_PREFIX = prefix
    settings.EVENT_BUS_PRODUCER_CONFIG = copy.deepcopy(PRODUCER_CONFIG)
    return settings


@pytest.fixture
def client(schema_registry) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": schema_registry.url}) as sr_client:
        yield sr_client


def expected_subjects(prefix: str) -> dict[str, str]:
    """Subject -> schema text, exactly as the producer registers them."""
    pairs = [(ENROLLMENT_SIGNAL, ENROLLMENT_TOPIC, ENROLLMENT_KEY_FIELD),
             (SESSION_LOGIN_COMPLETED, LOGIN_TOPIC, LOGIN_KEY_FIELD)]
    subjects = {}
    for signal, topic, key_field in pairs:
        for schema in (serialization.signal_schema(signal), serialization.key_schema(signal, key_field)):
            subjects[serialization.subject_name(f"{prefix}-{topic}", schema)] = schema.text
    return subjects


def value_subject(prefix: str) -> str:
    return f"{prefix}-{ENROLLMENT_TOPIC}-{ENROLLMENT_SIGNAL.event_type}.CloudEvent"


def enrollment_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The field list of the nested CourseEnrollmentData record (mutable, inside ``schema``)."""
    return schema["fields"][0]["type"]["fields"]


def run(*args: str) -> tuple[str, CommandError | None]:
    """Run the command in-process; returns its stdout and the CommandError it raised, if any."""
    out = io.StringIO()
    try:
        call_command("check_event_schemas", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def statuses() -> dict[str, str]:
    return {result.planned.subject or "?": result.status for result in schema_check.check(
        schema_check.planned_subjects())}


def test_plan__enabled_entries_with_prefix_and_exact_texts(schema_settings, prefix):
    """The plan lists a value and a key subject per enabled (event type, topic), prefixed, with the producer's texts."""
    planned = schema_check.planned_subjects()
    assert {item.subject: item.schema.text for item in planned if item.schema} == expected_subjects(prefix)
    assert [(item.event_type, item.kind) for item in planned] == [
        (ENROLLMENT_SIGNAL.event_type, "value"), (ENROLLMENT_SIGNAL.event_type, "key"),
        (SESSION_LOGIN_COMPLETED.event_type, "value"), (SESSION_LOGIN_COMPLETED.event_type, "key"),
    ]
    assert f"{prefix}-{ENROLLMENT_TOPIC}-string" in {item.subject for item in planned}


def test_fresh_registry__new_then_register_creates_exact_subjects(schema_settings, schema_registry, prefix):
    """On an empty registry every subject is new and untouched; --register creates them with the producer's schemas."""
    output, error = run()
    assert error is None, output
    assert set(statuses().values()) == {"new"}
    assert schema_registry.subjects(prefix) == {}
    assert "4 new; 0 registered" in output

    output, error = run("--register")
    assert error is None, output
    expected = {subject: [text] for subject, text in expected_subjects(prefix).items()}
    assert comparable(schema_registry, schema_registry.subjects(prefix)) == comparable(schema_registry, expected)
    assert "4 registered" in output


def test_registered_schemas_get_the_producers_ids(schema_settings, schema_registry, client, prefix):
    """The check's ids are the ids a producer's own registration (fresh client) gets, with no new version."""
    results = schema_check.check(schema_check.planned_subjects(), register=True)
    ids = {result.planned.subject: result.schema_id for result in results}
    producer_ids = serialization.SchemaIds(client)  # its own client: the answer comes from the registry, not a cache
    for planned in schema_check.planned_subjects():
        assert producer_ids.id_for(planned.subject, planned.schema) == ids[planned.subject]
    expected = {subject: [text] for subject, text in expected_subjects(prefix).items()}
    assert comparable(schema_registry, schema_registry.subjects(prefix)) == comparable(schema_registry, expected)


def test_second_run__identical(schema_settings, schema_registry, prefix):
    """After registering, a second run reports every subject identical with its latest version, and exits 0.

    Apicurio (like Confluent) stores a key's schema in canonical form (``"string"``), so there the key
    rows are found identical by lookup; the stand-in answers the text it was sent.
    """
    run("--register")
    output, error = run("--json")
    assert error is None, output
    report = json.loads(output)
    assert report["ok"] is True
    assert {row["status"] for row in report["subjects"]} == {"identical"}
    assert {row["latest_version"] for row in report["subjects"]} == {1}
    assert report["registered"] == 0
    key_details = {row["detail"] for row in report["subjects"] if row["kind"] == "key"}
    assert key_details == ({""} if schema_registry.keeps_schema_text
                           else {"same schema, stored by the registry in another form"})


def test_canonical_form_in_registry__still_identical(schema_settings, monkeypatch, prefix):
    """A registry answering its canonical text (Confluent: "string" for a key) is asked by lookup: still identical."""
    run("--register")
    client = serialization.registry_client()
    real_get_version = client.get_version

    def canonical(subject, version="latest", **kwargs):
        found = real_get_version(subject, version, **kwargs)
        if not subject.endswith("-string"):
            return found
        return RegisteredSchema(subject=subject, version=found.version, schema_id=found.schema_id, guid=None,
                                schema=Schema('"string"', "AVRO"))

    monkeypatch.setattr(client, "get_version", canonical)
    results = {r.planned.subject: r for r in schema_check.check(schema_check.planned_subjects())}
    key = results[f"{prefix}-{ENROLLMENT_TOPIC}-string"]
    assert (key.status, key.latest_version) == ("identical", 1)
    assert "another form" in key.detail
    assert {r.status for r in results.values()} == {"identical"}


def test_compatible_change__reported_then_registered(schema_settings, schema_registry, client, prefix):
    """An older registered value lacking a nullable field is BACKWARD compatible: exit 0, then registered as v2."""
    older = copy.deepcopy(serialization.signal_schema(ENROLLMENT_SIGNAL).schema)
    fields = enrollment_fields(older)
    fields[:] = [field for field in fields if field["name"] != "created_by"]
    client.register_schema(value_subject(prefix), Schema(json.dumps(older, sort_keys=True), "AVRO"))

    output, error = run("--event-type", ENROLLMENT_SIGNAL.event_type)
    assert error is None, output
    assert statuses()[value_subject(prefix)] == "compatible"
    assert len(schema_registry.subjects(prefix)[value_subject(prefix)]) == 1

    output, error = run("--register", "--event-type", ENROLLMENT_SIGNAL.event_type)
    assert error is None, output
    ours = serialization.signal_schema(ENROLLMENT_SIGNAL).text
    versions = {value_subject(prefix): schema_registry.subjects(prefix)[value_subject(prefix)]}
    expected = {value_subject(prefix): [json.dumps(older, sort_keys=True), ours]}
    assert comparable(schema_registry, versions) == comparable(schema_registry, expected)
    assert statuses()[value_subject(prefix)] == "identical"
    assert LOGIN_TOPIC not in output  # the filter kept the other event type out


def test_incompatible_change__fails_unregistered_with_the_registrys_reasons(
    schema_settings, schema_registry, client, prefix,
):
    """A registered `mode` of type long cannot be read as our string: incompatible, not registered, exit 1.

    The stand-in explains why (its verbose check names the field); Apicurio's verbose check gives no
    reasons, so the row says the registry gave no details.
    """
    registered = copy.deepcopy(serialization.signal_schema(ENROLLMENT_SIGNAL).schema)
    for field in enrollment_fields(registered):
        if field["name"] == "mode":
            field["type"] = "long"
    client.register_schema(value_subject(prefix), Schema(json.dumps(registered, sort_keys=True), "AVRO"))

    output, error = run("--register")
    assert error is not None
    assert "1 incompatible" in str(error)
    assert "incompatible" in output
    assert len(schema_registry.subjects(prefix)[value_subject(prefix)]) == 1  # not registered
    results = schema_check.check(schema_check.planned_subjects())
    result = next(r for r in results if r.planned.subject == value_subject(prefix))
    assert (result.status, result.latest_version) == ("incompatible", 1)
    if isinstance(schema_registry, SchemaRegistryStandIn):
        assert "TYPE_MISMATCH" in output and "/fields/mode" in output  # the stand-in's verbose message
        assert any("/fields/mode" in message for message in result.messages)
    else:
        assert result.messages == ()
        assert "the registry gave no details" in output


def test_no_registry__clear_error(schema_settings):
    """Without EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL the command says so and exits non-zero."""
    schema_settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = None
    output, error = run()
    assert error is not None
    assert "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL is not set" in str(error)
    assert output == ""


def test_unreachable_registry__error_rows(schema_settings, monkeypatch):
    """A registry nobody listens on gives an error row per subject and a non-zero exit."""
    dead = SchemaRegistryStandIn().start()
    url = dead.url
    dead.stop()  # the port is now closed: connections are refused
    schema_settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = url
    # The client's default retries wait a random 0-7 s on a refused connection; the behaviour is the same without.
    fast = functools.lru_cache(maxsize=1)(lambda: SchemaRegistryClient({"url": url, "max.retries": 0}))
    monkeypatch.setattr(serialization, "registry_client", fast)  # lru_cache: clear_caches() still works
    output, error = run("--json")
    assert error is not None and "4 error(s)" in str(error)
    rows = json.loads(output)["subjects"]
    assert [row["status"] for row in rows] == ["error"] * 4
    assert "registry unreachable (ConnectError" in rows[0]["detail"]
    assert all(row["detail"].startswith("not checked: registry unreachable") for row in rows[1:])


def test_bad_configuration__error_rows(schema_settings, prefix):
    """Unknown event types, key paths missing from the schema and unconfigured filters are error rows."""
    schema_settings.EVENT_BUS_PRODUCER_CONFIG = {
        "org.openedx.nothing.such.v1": {"t1": {"event_key_field": "x", "enabled": True}},
        ENROLLMENT_SIGNAL.event_type: {"t2": {"event_key_field": "enrollment.nope", "enabled": True}},
    }
    results = schema_check.check(schema_check.planned_subjects(event_types=[
        "org.openedx.nothing.such.v1", ENROLLMENT_SIGNAL.event_type, SESSION_LOGIN_COMPLETED.event_type]))
    assert [(r.planned.kind, r.status) for r in results] == [
        ("value", "error"), ("value", "new"), ("key", "error"), ("value", "error")]
    assert "unknown event type" in results[0].detail
    assert "'enrollment.nope' failed at 'nope'" in results[2].detail
    assert "not an enabled event type" in results[3].detail
    output, error = run()
    assert error is not None and "2 error(s)" in str(error)
    assert f"? (org.openedx.nothing.such.v1 on {prefix}-t1)" in output


def test_command_as_a_subprocess__registers_and_exits_0(schema_registry, prefix):
    """``python manage.py check_event_schemas --register`` reaches the chosen registry over HTTP, registers, exits 0."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVENT_BUS_")}
    env["EVENT_BUS_SETTINGS_JSON"] = json.dumps({
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": schema_registry.url, "EVENT_BUS_TOPIC_PREFIX": prefix,
        "EVENT_BUS_PRODUCER_CONFIG": PRODUCER_CONFIG,
    })
    command = [sys.executable, "manage.py", "check_event_schemas", "--register"]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 new; 4 registered" in first.stdout
    expected = {subject: [text] for subject, text in expected_subjects(prefix).items()}
    assert comparable(schema_registry, schema_registry.subjects(prefix)) == comparable(schema_registry, expected)

    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "4 identical; 0 registered" in second.stdout
