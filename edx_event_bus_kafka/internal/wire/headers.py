"""CloudEvents message headers <-> openedx-events ``EventsMetadata``.

The header names, their order and their encodings are the wire format shared with the reference
implementation (OEP-41): every value is UTF-8 text. Reading tolerates missing optional headers but
requires ``ce_id`` and ``ce_type``; a header given twice makes the message unusable, because we
cannot tell which value was meant.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.errors import UnusableMessageError

HEADER_EVENT_TYPE = "ce_type"
HEADER_ID = "ce_id"
HEADER_SOURCE = "ce_source"
HEADER_SPEC_VERSION = "ce_specversion"
HEADER_TIME = "ce_time"
HEADER_MINORVERSION = "ce_minorversion"
HEADER_SOURCEHOST = "sourcehost"
HEADER_SOURCELIB = "sourcelib"
HEADER_CONTENT_TYPE = "content-type"
HEADER_DATA_CONTENT_TYPE = "ce_datacontenttype"

SPEC_VERSION = b"1.0"
AVRO_CONTENT_TYPE = b"application/avro"

Headers = list[tuple[str, bytes]]


class _MetadataHeader(NamedTuple):
    header: str
    field: str
    to_text: Callable[[Any], str]
    from_text: Callable[[str], Any]


def _sourcelib_to_text(sourcelib: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in sourcelib)


def _sourcelib_from_text(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


# In the order the reference writes them, after the three constant headers.
_METADATA_HEADERS = (
    _MetadataHeader(HEADER_EVENT_TYPE, "event_type", str, str),
    _MetadataHeader(HEADER_ID, "id", str, UUID),
    _MetadataHeader(HEADER_SOURCE, "source", str, str),
    _MetadataHeader(HEADER_TIME, "time", datetime.isoformat, datetime.fromisoformat),
    _MetadataHeader(HEADER_MINORVERSION, "minorversion", str, int),
    _MetadataHeader(HEADER_SOURCEHOST, "sourcehost", str, str),
    _MetadataHeader(HEADER_SOURCELIB, "sourcelib", _sourcelib_to_text, _sourcelib_from_text),
)
_REQUIRED = (HEADER_ID, HEADER_EVENT_TYPE)


def _headers_from_metadata(metadata: EventsMetadata) -> Headers:
    """The message headers for an event's metadata, as the reference writes them (the reference form)."""
    headers: Headers = [
        (HEADER_SPEC_VERSION, SPEC_VERSION),
        (HEADER_CONTENT_TYPE, AVRO_CONTENT_TYPE),
        (HEADER_DATA_CONTENT_TYPE, AVRO_CONTENT_TYPE),
    ]
    for spec in _METADATA_HEADERS:
        headers.append((spec.header, spec.to_text(getattr(metadata, spec.field)).encode("utf-8")))
    return headers


# Headers that are the same for every event of a type from one process, by what they derive from.
_constant_headers: dict[tuple[Any, ...], tuple[Headers, Headers, Headers]] = {}


def headers_from_metadata(metadata: EventsMetadata) -> Headers:
    """The message headers for an event's metadata, as the reference writes them.

    Only ``ce_id`` and ``ce_time`` change from event to event; the other eight are encoded once per
    (type, source, minor version, host, library version) and reused.
    """
    constant_key = (metadata.event_type, metadata.source, metadata.minorversion, metadata.sourcehost,
                    metadata.sourcelib)
    parts = _constant_headers.get(constant_key)
    if parts is None:
        full = _headers_from_metadata(metadata)
        # Order: specversion, content-type, datacontenttype, type | id | source | time | minorversion...
        parts = (full[0:4], full[5:6], full[7:])
        if len(_constant_headers) < 1000:  # bounded: a handful of types and hosts in practice
            _constant_headers[constant_key] = parts
    before_id, between, after_time = parts
    return [
        *before_id,
        (HEADER_ID, str(metadata.id).encode("utf-8")),
        *between,
        (HEADER_TIME, metadata.time.isoformat().encode("utf-8")),
        *after_time,
    ]


def header_values(headers: Any, name: str) -> list[str]:
    """Every value of header ``name``, decoded (undecodable bytes are replaced, for logging)."""
    return [
        value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        for key, value in (headers or ())
        if key == name
    ]


def single_header(headers: Any, name: str) -> str | None:
    """The value of a header expected at most once; ``None`` if absent or repeated (for logs)."""
    values = header_values(headers, name)
    return values[0] if len(values) == 1 else None


def metadata_from_headers(headers: Any) -> EventsMetadata:
    """Rebuild ``EventsMetadata`` from a consumed message's headers.

    Raises:
        UnusableMessageError: a required header is missing, a header is repeated, or a value cannot
            be parsed. The caller adds the message's topic, partition and offset.

    """
    grouped: dict[str, list[bytes]] = {}
    for key, value in headers or ():
        grouped.setdefault(key, []).append(value)
    for required in _REQUIRED:
        if required not in grouped:
            raise UnusableMessageError(f"missing required header {required!r}")
    kwargs: dict[str, Any] = {}
    for spec in _METADATA_HEADERS:
        values = grouped.get(spec.header)
        if not values:
            continue
        if len(values) > 1:
            raise UnusableMessageError(
                f"header {spec.header!r} appears {len(values)} times; cannot tell which is meant"
            )
        try:
            kwargs[spec.field] = spec.from_text(values[0].decode("utf-8"))
        except (ValueError, UnicodeDecodeError, AttributeError) as error:
            raise UnusableMessageError(f"header {spec.header!r} has an invalid value: {error}") from error
    try:
        return EventsMetadata(**kwargs)
    except (TypeError, ValueError) as error:
        raise UnusableMessageError(f"headers do not form valid event metadata: {error}") from error
