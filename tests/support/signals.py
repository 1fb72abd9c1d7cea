"""The signals of the installed openedx-events, sorted into what its own serializer can handle.

Everything here is derived at run time from the installed release (10.x on Python 3.11, 11.x on
3.12 and later), never listed by hand: a signal is serializable when openedx-events'
``AvroSignalSerializer`` builds its schema. A release that makes more signals serializable (10.x
could not describe ``Dict`` fields without annotations or lists of attrs classes; 11.x can) adds test
cases instead of breaking a fixed list.
"""
from __future__ import annotations

import math
import struct
from typing import Any

import attr
from openedx_events.event_bus.avro.serializer import AvroSignalSerializer
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals

load_all_signals()
ALL_SIGNALS = sorted(OpenEdxPublicSignal.all_events(), key=lambda signal: signal.event_type)
# The Avro types the generated readers and writers cover (besides records, arrays, maps, ["null", X]).
FAST_PATH_PRIMITIVES = frozenset({"string", "long", "boolean", "double", "null"})


def schema_error(signal: Any) -> Exception | None:
    """Why openedx-events cannot build ``signal``'s Avro schema, or None when it can."""
    try:
        AvroSignalSerializer(signal).schema  # noqa: B018 -- building the schema is the check
    except Exception as error:  # noqa: BLE001 -- openedx-events raises bare Exception or TypeError
        return error
    return None


def schema_or_none(signal: Any) -> Any:
    """``signal``'s Avro schema as openedx-events derives it, or None when it cannot."""
    return None if schema_error(signal) is not None else AvroSignalSerializer(signal).schema


SERIALIZABLE = [signal for signal in ALL_SIGNALS if schema_error(signal) is None]
NOT_SERIALIZABLE = [signal for signal in ALL_SIGNALS if schema_error(signal) is not None]


def uses_only_fast_path_avro(schema: Any, named: set[str] | None = None) -> bool:
    """Independent check of the Avro subset the generated code covers (named references included)."""
    named = set() if named is None else named
    if isinstance(schema, str):
        return schema in FAST_PATH_PRIMITIVES or schema in named
    if isinstance(schema, list):
        return len(schema) == 2 and schema[0] == "null" and uses_only_fast_path_avro(schema[1], named)
    kind = schema["type"]
    if kind == "record":
        named.add(schema["name"])
        return all(uses_only_fast_path_avro(field["type"], named) for field in schema["fields"])
    if kind in ("array", "map"):
        return uses_only_fast_path_avro(schema["items" if kind == "array" else "values"], named)
    return uses_only_fast_path_avro(kind, named)


def signal_id(value: Any) -> str:
    """Test id: the event type of a signal, or the value itself (a variant name)."""
    return value if isinstance(value, str) else value.event_type


class StandInSignal:
    """Just what openedx-events' schema derivation and (de)serializers read from a signal."""

    def __init__(self, event_type: str, **init_data: Any):
        self.event_type = event_type
        self.init_data = init_data

    def __repr__(self) -> str:
        return f"StandInSignal({self.event_type!r})"


def _canonical(value: Any) -> Any:
    """A stricter view than ==: exact types everywhere, floats by bit pattern (so NaN equals itself)."""
    if hasattr(type(value), "__attrs_attrs__"):
        fields = attr.fields(type(value))
        return type(value), tuple((field.name, _canonical(getattr(value, field.name))) for field in fields)
    if isinstance(value, dict):
        return dict, tuple((_canonical(key), _canonical(item)) for key, item in value.items())
    if isinstance(value, list):
        return list, tuple(_canonical(item) for item in value)
    if isinstance(value, float):
        return float, struct.pack("<d", value)
    return type(value), value, repr(value)


def _has_nan(value: Any) -> bool:
    if hasattr(type(value), "__attrs_attrs__"):
        return any(_has_nan(getattr(value, field.name)) for field in attr.fields(type(value)))
    if isinstance(value, dict):
        return any(_has_nan(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_nan(item) for item in value)
    return isinstance(value, float) and math.isnan(value)


def assert_same_event_data(result: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal with == (NaN aside: it never equals itself) and also type for type, bit for bit."""
    assert _has_nan(expected) or result == expected
    assert _canonical(result) == _canonical(expected)
