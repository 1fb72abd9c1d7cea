"""Consumed message -> (signal, event data, metadata), or an :class:`UnusableMessageError` saying why not.

The value's first bytes tell the framing apart: ``0x00`` is Confluent (schema id, writer schema from
the registry), ``0xC3 0x01`` is single-object encoding (schema fingerprint, which must be the one
of our local schema for the event type). The value is read with the writer's schema resolved to
ours, so a compatible schema change on the producing side decodes correctly; anything else is
rejected with a clear reason, never decoded wrongly.
"""
from __future__ import annotations

import functools
import io
import json
import threading
from typing import Any

import fastavro
from openedx_events.data import EventsMetadata
from openedx_events.event_bus.avro.deserializer import AvroSignalDeserializer
from openedx_events.tooling import OpenEdxPublicSignal

from edx_event_bus_kafka.internal.errors import UnusableMessageError
from edx_event_bus_kafka.internal.settings.declarations import get_settings, on_settings_changed
from edx_event_bus_kafka.internal.wire.fast.reader import FallBack, compile_event_reader
from edx_event_bus_kafka.internal.wire.headers import HEADER_EVENT_TYPE, header_values, metadata_from_headers
from edx_event_bus_kafka.internal.wire.serialization import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MARKER,
    registry_client,
    schema_fingerprint,
    signal_schema,
)


class WriterSchemas:
    """Writer schemas fetched from the registry by id, parsed once (thread-safe)."""

    def __init__(self, client: Any):
        self.client = client
        self._parsed: dict[int, tuple[Any, bytes]] = {}
        self._lock = threading.Lock()

    def parsed(self, schema_id: int) -> tuple[Any, bytes]:
        """The parsed writer schema for ``schema_id`` and its CRC-64-AVRO fingerprint."""
        found = self._parsed.get(schema_id)
        if found is None:
            schema = self.client.get_schema(schema_id)
            parsed = fastavro.parse_schema(json.loads(schema.schema_str))
            found = (parsed, schema_fingerprint(parsed))
            with self._lock:
                self._parsed[schema_id] = found
        return found


@functools.lru_cache(maxsize=1)
def writer_schemas() -> WriterSchemas | None:
    """The registry-backed writer schema cache, or None without a registry."""
    client = registry_client()
    return WriterSchemas(client) if client is not None else None


@functools.cache
def _deserializer(signal: OpenEdxPublicSignal) -> AvroSignalDeserializer:
    return AvroSignalDeserializer(signal)


def signal_for_type(event_type: str) -> OpenEdxPublicSignal:
    """The local signal for a ``ce_type``; raises UnusableMessageError when there is none."""
    try:
        return OpenEdxPublicSignal.get_signal_by_type(event_type)
    except KeyError:
        raise UnusableMessageError(f"unknown event type {event_type!r}: no OpenEdxPublicSignal has it") from None


def _writer_and_body(signal: OpenEdxPublicSignal, value: bytes, reader: Any) -> tuple[Any, bytes]:
    """The writer schema (None: our own) and the Avro body, from the value's framing."""
    if value[:1] == CONFLUENT_MAGIC:
        schemas = writer_schemas()
        if schemas is None:
            raise UnusableMessageError(
                "value uses the schema registry wire format but EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL is not set"
            )
        if len(value) < 5:
            raise UnusableMessageError("value is too short for the schema registry wire format")
        schema_id = int.from_bytes(value[1:5], "big")
        try:
            writer, writer_fingerprint = schemas.parsed(schema_id)
        except Exception as error:
            if _is_missing_schema(error):
                raise UnusableMessageError(f"schema id {schema_id} is not in the registry") from error
            raise  # registry unreachable: retriable, not the message's fault
        # Written with our own schema: no schema resolution needed.
        return (None if writer_fingerprint == reader.fingerprint else writer), value[5:]
    if value[:2] == SINGLE_OBJECT_MARKER:
        fingerprint = value[2:10]
        if fingerprint != reader.fingerprint:
            raise UnusableMessageError(
                f"unknown schema fingerprint {fingerprint.hex()} for {signal.event_type} "
                f"(this service knows {reader.fingerprint.hex()}); the producer's schema differs"
            )
        return None, value[10:]
    raise UnusableMessageError(f"value starts with {value[:2].hex()}: neither registry nor single-object Avro")


def decode_value(signal: OpenEdxPublicSignal, value: bytes | None) -> dict[str, Any]:
    """The event data (signal keyword arguments) encoded in a message value."""
    if not value:
        raise UnusableMessageError("message has no value")
    reader = signal_schema(signal)
    writer, body = _writer_and_body(signal, value, reader)
    if writer is None and get_settings().avro_fast_path:
        fast = compile_event_reader(signal)
        if fast is not None:
            try:
                return fast(body)
            except FallBack:
                pass  # the reference path below decodes it, or says precisely why it cannot
    stream = io.BytesIO(body)
    try:
        if writer is None:
            record = fastavro.schemaless_reader(stream, reader.parsed, None)
        else:
            record = fastavro.schemaless_reader(stream, writer, reader.parsed)
        data = _deserializer(signal).from_dict(record)
    except Exception as error:
        raise UnusableMessageError(f"value cannot be decoded as {signal.event_type}: {error!r}") from error
    left = len(body) - stream.tell()
    if left:  # a whole record was read, and more follows: the value is not what any producer writes
        raise UnusableMessageError(f"value has {left} bytes after the end of its {signal.event_type} record")
    return data


def _is_missing_schema(error: Exception) -> bool:
    return getattr(error, "http_status_code", None) == 404


def decode_message(message: Any, headers: Any = None) -> tuple[OpenEdxPublicSignal, dict[str, Any], EventsMetadata]:
    """Signal, event data and metadata of a consumed message (``headers``: its headers, if already read).

    Raises:
        UnusableMessageError: with the message's topic, partition, offset and (when readable) event id.

    """
    headers = message.headers() if headers is None else headers
    try:
        metadata = metadata_from_headers(headers)
        signal = signal_for_type(metadata.event_type)
        return signal, decode_value(signal, message.value()), metadata
    except UnusableMessageError as error:
        ids = header_values(headers, "ce_id")
        types = header_values(headers, HEADER_EVENT_TYPE)
        error.topic, error.partition, error.offset = message.topic(), message.partition(), message.offset()
        error.event_id = ",".join(ids) or None
        error.event_type = ",".join(types) or None
        raise


def clear_caches() -> None:
    """Forget registry-derived state (settings changed)."""
    writer_schemas.cache_clear()


on_settings_changed(clear_caches)
