"""Compare the Avro schemas our producer would register with what the schema registry holds.

For every enabled ``(event type, topic)`` of openedx-events' ``EVENT_BUS_PRODUCER_CONFIG`` the producer
registers two schemas: the value under ``{full_topic}-{event_type}.CloudEvent`` and the key under
``{full_topic}-{key type}`` (e.g. ``-string``). :func:`planned_subjects` lists them and :func:`check`
asks the registry about each. Compatibility is always the registry's own verdict under the subject's
own level, never a local guess, so a check says what registration will say; registering sends the
exact text the producer sends, so the ids are the producer's.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from django.conf import settings as django_settings
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals

from edx_event_bus_kafka.internal.errors import ConfigurationError
from edx_event_bus_kafka.internal.settings.clients import get_full_topic
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings
from edx_event_bus_kafka.internal.wire import serialization
from edx_event_bus_kafka.internal.wire.serialization import AvroSchema, SchemaIds, subject_name

try:  # the HTTP library the registry client really uses: httpx2 (confluent-kafka >= 2.16 picks it here) or httpx
    from confluent_kafka.schema_registry.common._httpx_compat import httpx
except ImportError:  # older confluent-kafka imports httpx itself
    import httpx  # type: ignore[no-redef, import-not-found, unused-ignore]

STATUSES = ("new", "identical", "compatible", "incompatible", "error")  # the last two fail the check
# Subject or version not found: the subject has no versions (40400 is confluent-kafka's mock client).
_NO_VERSIONS = frozenset({40400, 40401, 40402})
# What a request raises when it never got an HTTP answer.
_UNREACHABLE = (httpx.TransportError, httpx.InvalidURL, OSError)


@dataclass(frozen=True)
class PlannedSubject:
    """One subject the producer registers a schema under; ``problem`` says why it could not be derived."""

    event_type: str
    topic: str  # with the prefix
    kind: str  # "value" or "key"
    subject: str | None = None
    schema: AvroSchema | None = None
    problem: str | None = None


@dataclass(frozen=True)
class SubjectResult:
    """What the registry said about one planned subject; ``status`` is one of :data:`STATUSES`."""

    planned: PlannedSubject
    status: str
    latest_version: int | None = None  # the subject's latest version when compared, None when it had none
    registered_version: int | None = None  # set when this check registered our schema
    schema_id: int | None = None
    detail: str = ""
    messages: tuple[str, ...] = ()  # the registry's incompatibility messages

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (everything but the schema text)."""
        planned = self.planned
        return {"subject": planned.subject, "kind": planned.kind, "event_type": planned.event_type,
                "topic": planned.topic, "status": self.status, "latest_version": self.latest_version,
                "registered_version": self.registered_version, "schema_id": self.schema_id,
                "detail": self.detail, "messages": list(self.messages)}


def planned_subjects(
    settings: Any = None, *, event_types: Iterable[str] | None = None, bus_settings: EventBusSettings | None = None,
) -> list[PlannedSubject]:
    """Every subject and schema the producer registers, from ``EVENT_BUS_PRODUCER_CONFIG`` of ``settings``.

    ``event_types`` keeps only those types; one that is not enabled in the config becomes a problem row,
    as do unknown event types, bad key paths and malformed entries. Duplicates (the same key schema of
    two event types on one topic) are listed once.
    """
    config = getattr(settings or django_settings, "EVENT_BUS_PRODUCER_CONFIG", None) or {}
    if not isinstance(config, dict):
        return [PlannedSubject("?", "?", "value", problem="EVENT_BUS_PRODUCER_CONFIG must be a dict")]
    load_all_signals()
    wanted = list(dict.fromkeys(event_types)) if event_types is not None else list(config)
    planned: list[PlannedSubject] = []
    for event_type in wanted:
        topics = config.get(event_type, {})
        if not isinstance(topics, dict):
            planned.append(PlannedSubject(event_type, "?", "value", problem="config must be a dict of topics"))
            continue
        enabled = {topic: entry for topic, entry in topics.items()
                   if not isinstance(entry, dict) or entry.get("enabled") is True}
        if not enabled and event_types is not None:
            planned.append(PlannedSubject(event_type, "?", "value",
                                          problem="not an enabled event type of EVENT_BUS_PRODUCER_CONFIG"))
        for topic, entry in enabled.items():
            planned += _plan_topic(event_type, get_full_topic(topic, bus_settings), entry)
    unique: dict[tuple[str, str], PlannedSubject] = {}
    for index, item in enumerate(planned):
        unique.setdefault((item.subject, item.schema.text) if item.subject and item.schema else (str(index), ""), item)
    return list(unique.values())


def _plan_topic(event_type: str, full_topic: str, entry: Any) -> list[PlannedSubject]:
    key_field = entry.get("event_key_field") if isinstance(entry, dict) else None
    try:
        signal = OpenEdxPublicSignal.get_signal_by_type(event_type)
    except KeyError:
        return [PlannedSubject(event_type, full_topic, "value", problem=f"unknown event type {event_type!r}")]
    value = serialization.signal_schema(signal)
    planned = [PlannedSubject(event_type, full_topic, "value", subject_name(full_topic, value), value)]
    if not isinstance(key_field, str) or not key_field:
        problem = f"topic entry {entry!r} needs an 'event_key_field' (a dot path such as 'user.id')"
        return [*planned, PlannedSubject(event_type, full_topic, "key", problem=problem)]
    try:
        key = serialization.key_schema(signal, key_field)
    except KeyError as error:
        return [*planned, PlannedSubject(event_type, full_topic, "key", problem=str(error.args[0]))]
    return [*planned, PlannedSubject(event_type, full_topic, "key", subject_name(full_topic, key), key)]


def check(subjects: Iterable[PlannedSubject], *, register: bool = False, client: Any = None) -> list[SubjectResult]:
    """Ask the registry about each subject; with ``register``, register the new and compatible ones.

    Raises:
        ConfigurationError: no ``EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL`` is configured.

    """
    if client is None:
        client = serialization.registry_client()
    if client is None:
        raise ConfigurationError(["EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL is not set: there is no schema registry to "
                                  "check against. Set it to the registry's URL (e.g. http://schema-registry:8081)."])
    results: list[SubjectResult] = []
    unreachable: str | None = None
    for planned in subjects:
        if planned.problem or planned.subject is None or planned.schema is None:
            results.append(SubjectResult(planned, "error", detail=planned.problem or "no schema"))
        elif unreachable:  # one failed connection is enough; do not wait out the client's retries again
            results.append(SubjectResult(planned, "error", detail=f"not checked: {unreachable}"))
        else:
            try:
                results.append(_check_one(client, planned, planned.subject, planned.schema, register))
            except SchemaRegistryError as error:
                results.append(SubjectResult(planned, "error", detail=f"registry error HTTP {error.http_status_code} "
                                             f"(code {error.error_code}): {error.error_message}"))
            except _UNREACHABLE as error:
                unreachable = f"registry unreachable ({type(error).__name__}: {error})"
                results.append(SubjectResult(planned, "error", detail=unreachable))
    return results


def _check_one(client: Any, planned: PlannedSubject, subject: str, ours: AvroSchema, register: bool) -> SubjectResult:
    result = _compare(client, planned, subject, ours)
    if result.status not in ("new", "compatible"):
        return result
    if not register:
        return replace(result, detail="; ".join(filter(None, [result.detail, "not registered (use --register)"])))
    schema_id = SchemaIds(client).id_for(subject, ours)  # the producer's own call: same text, so the same id
    found = _lookup(client, subject, Schema(ours.text, "AVRO"))
    version = found.version if found is not None else None
    return replace(result, registered_version=version, schema_id=schema_id,
                   detail=f"registered as version {version}, id {schema_id}")


def _compare(client: Any, planned: PlannedSubject, subject: str, ours: AvroSchema) -> SubjectResult:
    schema = Schema(ours.text, "AVRO")
    try:
        latest = client.get_version(subject, "latest")  # "latest" is never answered from the client's cache
    except SchemaRegistryError as error:
        if error.error_code not in _NO_VERSIONS:
            raise
        return SubjectResult(planned, "new", detail="no versions yet")
    version = int(latest.version)
    if json.loads(latest.schema.schema_str) == json.loads(ours.text):
        return SubjectResult(planned, "identical", version, schema_id=latest.schema_id)
    # A registry may store a canonical form of the text we sent (Confluent does); then only it can tell.
    found = _lookup(client, subject, schema)
    if found is not None and found.version == version:
        return SubjectResult(planned, "identical", version, schema_id=found.schema_id,
                             detail="same schema, stored by the registry in another form")
    earlier = f"ours is already version {found.version}" if found is not None else ""
    try:  # under the subject's own level: transitive levels compare with every version
        compatible = bool(client.test_compatibility_all_versions(subject, schema))
    except SchemaRegistryError as error:
        if error.error_code not in (404, 405):
            raise
        compatible = bool(client.test_compatibility(subject, schema, version="latest"))  # older registries
    if compatible:
        return SubjectResult(planned, "compatible", version, detail=earlier)
    messages = _messages(client, subject, schema)
    reason = messages[0] if messages else "the registry gave no details"
    return SubjectResult(planned, "incompatible", version, detail="; ".join(filter(None, [reason, earlier])),
                         messages=tuple(messages))


def _lookup(client: Any, subject: str, schema: Schema) -> Any:
    """The registered version of ``schema`` under ``subject``, or None."""
    try:
        return client.lookup_schema(subject, schema)
    except SchemaRegistryError as error:
        if error.error_code in (40401, 40403):
            return None
        raise


def _messages(client: Any, subject: str, schema: Schema) -> list[str]:
    """The registry's explanation (``verbose=true``), best effort.

    confluent-kafka's ``test_compatibility*`` return only the boolean, so this asks again through the
    client's REST session (private API: it carries the configured URL, auth, TLS and retries).
    """
    rest = getattr(client, "_rest_client", None)
    if rest is None:
        return []
    path = f"compatibility/subjects/{quote(subject, safe='')}/versions"
    for url in (f"{path}?verbose=true", f"{path}/latest?verbose=true"):
        try:
            answer = rest.post(url, body=schema.to_dict())
        except (SchemaRegistryError, *_UNREACHABLE):
            continue
        if isinstance(answer, dict):
            return [str(message) for message in answer.get("messages") or ()]
    return []
