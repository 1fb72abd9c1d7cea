"""Both codec paths, generated and fallback, agree with openedx-events for every signal it can serialize.

The producer encodes with a generated writer when there is one and falls back to ``to_avro_record`` +
fastavro otherwise (or when the writer hands a value back); the consumer decodes with a generated
reader or falls back to fastavro + ``from_dict``. Each path is checked here on its own, for every
serializable signal of the installed openedx-events (derived at run time) and every sample variant,
so a signal the generated code does not cover is still known to be encoded and decoded correctly.
"""
from __future__ import annotations

from typing import Any

import attr
import pytest
from opaque_keys.edx.keys import CourseKey
from openedx_events.event_bus.avro.deserializer import deserialize_bytes_to_event_data
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes

from edx_event_bus_kafka.internal.errors import UnusableMessageError
from edx_event_bus_kafka.internal.wire import decode as decoding
from edx_event_bus_kafka.internal.wire import serialization
from edx_event_bus_kafka.internal.wire.fast.reader import compile_event_reader
from edx_event_bus_kafka.internal.wire.fast.writer import compile_event_writer
from edx_event_bus_kafka.internal.wire.serialization import SINGLE_OBJECT_MARKER, EventEncoder, signal_schema
from tests.support.sample_events import VARIANTS, sample_event_data
from tests.support.signals import (
    SERIALIZABLE,
    StandInSignal,
    assert_same_event_data,
    schema_error,
    signal_id,
    uses_only_fast_path_avro,
)

PATHS = ("generated", "fallback")


def _key_field(schema: Any, prefix: str = "") -> str | None:
    """A dotted path to the first non-nullable string or long field: any field will do as the event key."""
    for field in schema["fields"]:
        kind = field["type"]
        if kind in ("string", "long"):
            return prefix + field["name"]
        if isinstance(kind, dict) and kind.get("type") == "record":
            found = _key_field(kind, f"{prefix}{field['name']}.")
            if found:
                return found
    return None


def _encoder(signal: Any, path: str, monkeypatch: pytest.MonkeyPatch) -> EventEncoder:
    """An encoder of ``signal`` whose value goes through the generated writer or, forced, the fallback."""
    if path == "fallback":
        monkeypatch.setattr(serialization, "compile_event_writer", lambda signal: None)
    key_field = _key_field(signal_schema(signal).schema)
    assert key_field, f"{signal.event_type} has no string or long field to use as a key"
    encoder = EventEncoder(signal, key_field, "codec-paths")
    assert encoder._fast_value is None or path == "generated"
    return encoder


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("signal", "variant"), [(signal, variant) for signal in SERIALIZABLE for variant in VARIANTS], ids=signal_id
)
def test_encoded_value_is_openedx_events_bytes_on_either_path(signal, variant, path, monkeypatch):
    """Through the generated writer or the fallback, the value body is what openedx-events' serializer writes."""
    data = sample_event_data(signal, variant)
    _key, value = _encoder(signal, path, monkeypatch).encode(data)
    framing = SINGLE_OBJECT_MARKER + signal_schema(signal).fingerprint  # the unit tests run without a registry
    assert value == framing + serialize_event_data_to_bytes(data, signal)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("signal", "variant"), [(signal, variant) for signal in SERIALIZABLE for variant in VARIANTS], ids=signal_id
)
def test_decoded_value_is_openedx_events_event_data_on_either_path(signal, variant, path, monkeypatch):
    """Through the generated reader or the fallback, decoding gives what openedx-events' deserializer gives."""
    if path == "fallback":
        monkeypatch.setattr(decoding, "compile_event_reader", lambda signal: None)
    body = serialize_event_data_to_bytes(sample_event_data(signal, variant), signal)
    value = SINGLE_OBJECT_MARKER + signal_schema(signal).fingerprint + body
    assert_same_event_data(decoding.decode_value(signal, value), deserialize_bytes_to_event_data(body, signal))


@pytest.mark.parametrize("signal", SERIALIZABLE, ids=signal_id)
def test_a_signal_falls_back_only_when_its_schema_is_outside_the_generated_avro(signal):
    """The fallback signals of the installed openedx-events are exactly those using Avro we do not generate."""
    falls_back = compile_event_writer(signal) is None or compile_event_reader(signal) is None
    assert falls_back == (not uses_only_fast_path_avro(signal_schema(signal).schema))


# Collections of records and of collections: openedx-events 11.0 made them serializable (10.x has no
# schema for them). Two levels deep at most: sample collections hold up to 100 items per level.
@attr.s(frozen=True)
class _Item:
    name = attr.ib(type=str)
    course = attr.ib(type=CourseKey)
    weight = attr.ib(type=float, default=1.5)  # from_dict lets falsy values give way, inside lists too
    note = attr.ib(type=str, default=None)


@attr.s(frozen=True)
class _Nested:
    items = attr.ib(type=list[_Item])
    by_name = attr.ib(type=dict[str, _Item])  # the second _Item: a reference to the record by name
    grid = attr.ib(type=list[list[int]])
    filters = attr.ib(type=dict[str, list[str]])
    rows = attr.ib(type=list[dict[str, str]])
    groups = attr.ib(type=dict[str, list[_Item]])
    tags = attr.ib(type=list[str], factory=list)


NESTED = StandInSignal("org.test.nested.v1", nested=_Nested, top=list[dict[str, bool]])


@pytest.mark.parametrize("variant", VARIANTS)
def test_nested_collections_follow_the_installed_openedx_events(variant):
    """Where openedx-events describes nested collections, both generated paths match it; where not, none compile."""
    if schema_error(NESTED) is not None:  # openedx-events 10.x: no schema, so nothing to encode or decode
        assert compile_event_writer(NESTED) is None
        assert compile_event_reader(NESTED) is None
        return
    writer, reader = compile_event_writer(NESTED), compile_event_reader(NESTED)
    assert writer is not None
    assert reader is not None
    data = sample_event_data(NESTED, variant)
    body = serialize_event_data_to_bytes(data, NESTED)
    assert writer(data) == body
    assert_same_event_data(reader(body), deserialize_bytes_to_event_data(body, NESTED))


@attr.s(frozen=True)
class _ByNumber:
    items = attr.ib(type=dict[int, _Item])


def test_nested_values_under_non_str_keys_have_no_reader_and_decode_reports_the_error():
    """from_dict refuses Dict[int, attrs]: no generated reader, and decoding says why instead of guessing."""
    signal = StandInSignal("org.test.by_number.v1", value=_ByNumber)
    assert compile_event_reader(signal) is None
    if schema_error(signal) is not None:  # openedx-events 10.x cannot describe it at all
        return
    item = _Item(name="a", course=CourseKey.from_string("course-v1:edX+DemoX+Demo_Course"))
    body = serialize_event_data_to_bytes({"value": _ByNumber(items={1: item})}, signal)
    with pytest.raises(UnusableMessageError, match="cannot be decoded"):
        decoding.decode_value(signal, SINGLE_OBJECT_MARKER + signal_schema(signal).fingerprint + body)
