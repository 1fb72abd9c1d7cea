"""Avro encoding of event keys and values, in the two framings the bus carries.

* **With a schema registry** (``EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL``): Confluent wire format,
  ``0x00`` + 4-byte big-endian schema id + Avro body. Schemas are registered under
  ``{full_topic}-{record name}`` with the same schema text the reference registers, so both
  implementations share schema ids and produce identical bytes.
* **Without a registry**: Avro single-object encoding, ``0xC3 0x01`` + 8-byte little-endian
  CRC-64-AVRO fingerprint of the schema's canonical form + Avro body. Only this implementation
  reads it (a development convenience; mixed fleets need the registry).

Schemas, parsed schemas and registered ids are cached; the caches are cleared when settings change.
"""
from __future__ import annotations

import functools
import io
import json
import threading
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from openedx_events.event_bus.avro.serializer import AvroSignalSerializer
from openedx_events.tooling import OpenEdxPublicSignal

from edx_event_bus_kafka.internal.settings.clients import schema_registry_client_config
from edx_event_bus_kafka.internal.settings.declarations import get_settings, on_settings_changed
from edx_event_bus_kafka.internal.wire.fast.writer import FallBack, compile_event_writer, compile_key_writer
from edx_event_bus_kafka.internal.wire.records import event_data_to_record, extract_event_key, to_avro_record

CONFLUENT_MAGIC = b"\x00"
SINGLE_OBJECT_MARKER = b"\xc3\x01"



def schema_fingerprint(parsed_schema: Any) -> bytes:
    """The CRC-64-AVRO fingerprint of a parsed schema's canonical form (Avro single-object encoding)."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed_schema), "CRC-64-AVRO"))

@dataclass(frozen=True)
class AvroSchema:
    """One Avro schema in the three forms we need: as JSON data, as registered text, and parsed."""

    schema: Any
    text: str
    parsed: Any
    record_name: str | None
    fingerprint: bytes

    @classmethod
    def from_json_data(cls, schema: Any) -> AvroSchema:
        """Build from the schema as JSON data (as openedx-events derives it from a signal)."""
        parsed = fastavro.parse_schema(schema)
        return cls(
            schema=schema,
            # The exact text the reference registers: json.dumps with sorted keys.
            text=json.dumps(schema, sort_keys=True),
            parsed=parsed,
            record_name=_record_name(parsed, schema),
            fingerprint=schema_fingerprint(parsed),
        )

    def write(self, record: Any) -> bytes:
        """The Avro binary body of ``record``."""
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self.parsed, record)
        return out.getvalue()


def _record_name(parsed: Any, schema: Any) -> str | None:
    """Name used by topic_record_subject_name_strategy: full name, or the type of a primitive."""
    if isinstance(parsed, dict):
        fallback = schema.get("type") if isinstance(schema, dict) else None
        return parsed.get("name", fallback)
    if isinstance(parsed, str):
        return parsed
    return None  # unions have no name


@functools.cache
def signal_schema(signal: OpenEdxPublicSignal) -> AvroSchema:
    """The value schema of a signal, derived by openedx-events."""
    return AvroSchema.from_json_data(AvroSignalSerializer(signal).schema)


@functools.cache
def key_schema(signal: OpenEdxPublicSignal, event_key_field: str) -> AvroSchema:
    """The key schema: the sub-schema found by following ``event_key_field`` through the signal schema.

    Raises:
        KeyError: the path does not exist in the schema.

    """
    subschema: Any = signal_schema(signal).schema
    for name in event_key_field.split("."):
        container = subschema if "fields" in subschema else subschema.get("type")
        fields = container.get("fields") if isinstance(container, dict) else None
        matching = [field for field in fields or () if field.get("name") == name]
        if not matching:
            raise KeyError(
                f"event key path {event_key_field!r} failed at {name!r}: not in the {signal.event_type} schema"
            )
        subschema = matching[0]
    return AvroSchema.from_json_data(subschema)


def subject_name(full_topic: str, schema: AvroSchema) -> str:
    """Registry subject, as confluent-kafka's topic_record_subject_name_strategy names it."""
    return f"{full_topic}-{schema.record_name}"


class SchemaIds:
    """Registers schemas under their subjects once and remembers the ids (thread-safe)."""

    def __init__(self, client: Any):
        self.client = client
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def id_for(self, subject: str, schema: AvroSchema) -> int:
        """The registry id of ``schema`` under ``subject``, registering it on first use."""
        key = (subject, schema.text)
        found = self._ids.get(key)
        if found is None:
            from confluent_kafka.schema_registry import Schema

            with self._lock:
                found = self._ids.get(key)
                if found is None:
                    found = int(self.client.register_schema(subject, Schema(schema.text, "AVRO")))
                    self._ids[key] = found
        return found


@functools.lru_cache(maxsize=1)
def registry_client() -> Any:
    """The schema registry client (``mock://`` URLs give confluent's in-process mock), or None."""
    config = schema_registry_client_config()
    if config is None:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client(config)


@functools.lru_cache(maxsize=1)
def schema_ids() -> SchemaIds | None:
    """The registration cache for the configured registry, or None without one."""
    client = registry_client()
    return SchemaIds(client) if client is not None else None


class EventEncoder:
    """Encodes the key and value of one event type for one topic; build with :func:`encoder_for`."""

    def __init__(self, signal: OpenEdxPublicSignal, event_key_field: str, full_topic: str):
        self.signal = signal
        self.event_key_field = event_key_field
        self.full_topic = full_topic
        self.value_schema = signal_schema(signal)
        self.key_schema = key_schema(signal, event_key_field)
        self._prefixes: tuple[bytes, bytes] | None = None
        # Generated writers: several times faster, same bytes; None when the schema needs the slow path.
        fast = get_settings().avro_fast_path
        self._fast_value = compile_event_writer(signal) if fast else None
        self._fast_key = compile_key_writer(self.key_schema.schema) if fast else None

    def _framing(self) -> tuple[bytes, bytes]:
        """Key and value prefixes; with a registry this registers both schemas (network, once)."""
        if self._prefixes is None:
            ids = schema_ids()
            if ids is None:
                key_prefix = SINGLE_OBJECT_MARKER + self.key_schema.fingerprint
                value_prefix = SINGLE_OBJECT_MARKER + self.value_schema.fingerprint
            else:
                key_id = ids.id_for(subject_name(self.full_topic, self.key_schema), self.key_schema)
                value_id = ids.id_for(subject_name(self.full_topic, self.value_schema), self.value_schema)
                key_prefix = CONFLUENT_MAGIC + key_id.to_bytes(4, "big")
                value_prefix = CONFLUENT_MAGIC + value_id.to_bytes(4, "big")
            self._prefixes = (key_prefix, value_prefix)
        return self._prefixes

    def event_key(self, event_data: dict[str, Any]) -> Any:
        """The key value (before encoding) named by the key field."""
        return extract_event_key(event_data, self.event_key_field)

    def encode_record(self, record: dict[str, Any]) -> tuple[bytes, bytes]:
        """Encoded ``(key, value)`` of an event already converted to its Avro record (outbox rows)."""
        key_prefix, value_prefix = self._framing()
        key = key_prefix + self.key_schema.write(to_avro_record(extract_event_key(record, self.event_key_field)))
        return key, value_prefix + self.value_schema.write(record)

    def encode(self, event_data: dict[str, Any]) -> tuple[bytes, bytes]:
        """Encoded ``(key, value)`` bytes of one event."""
        key_prefix, value_prefix = self._framing()
        key_value = self.event_key(event_data)
        key_body = _fast_or_none(self._fast_key, key_value)
        if key_body is None:
            key_body = self.key_schema.write(to_avro_record(key_value))
        value_body = _fast_or_none(self._fast_value, event_data)
        if value_body is None:
            value_body = self.value_schema.write(event_data_to_record(event_data))
        return key_prefix + key_body, value_prefix + value_body


def _fast_or_none(writer: Any, value: Any) -> bytes | None:
    """The generated writer's bytes, or None when there is none or it hands the value back."""
    if writer is None:
        return None
    try:
        return bytes(writer(value))
    except FallBack:
        return None


_encoders: dict[tuple[OpenEdxPublicSignal, str, str], EventEncoder] = {}


def encoder_for(signal: OpenEdxPublicSignal, event_key_field: str, full_topic: str) -> EventEncoder:
    """The cached encoder for an event type, key field and topic."""
    cache_key = (signal, event_key_field, full_topic)
    encoder = _encoders.get(cache_key)
    if encoder is None:
        encoder = _encoders[cache_key] = EventEncoder(signal, event_key_field, full_topic)
    return encoder


def clear_caches() -> None:
    """Forget schemas, ids and clients (settings changed, or tests)."""
    _encoders.clear()
    schema_ids.cache_clear()
    registry_client.cache_clear()


on_settings_changed(clear_caches)
