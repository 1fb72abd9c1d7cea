"""Event data (attrs objects, opaque keys, datetimes) <-> Avro record dicts, fast.

openedx-events' ``AvroSignalSerializer.to_dict`` gives the record dict that defines the wire bytes,
but it walks the data through ``attr.asdict`` and a JSON dump-and-load, which costs more than the
Avro encoding itself. :func:`to_avro_record` produces the same dict directly (a test encodes many
events both ways and compares the bytes), using the same custom type serializers.
"""
from __future__ import annotations

import math
from typing import Any

from openedx_events.event_bus.avro.custom_serializers import DEFAULT_CUSTOM_SERIALIZERS

# Values fastavro takes as they are.
_PLAIN = (str, int, float, bool)
_NO_DEFAULT = object()
_STANDARD_NAN = float("nan")

_SERIALIZERS: tuple[tuple[type, Any], ...] = tuple((ext.cls, ext.serialize) for ext in DEFAULT_CUSTOM_SERIALIZERS)
# Custom serializer chosen per concrete value type; computed once per type.
_by_value_type: dict[type, Any] = {}
# Custom serializer chosen by a field's declared type (checked before the value's type).
_by_field_type: dict[type, Any] = {}


def _serializer_for_field_type(field_type: Any) -> Any:
    if not isinstance(field_type, type):
        return None
    if field_type not in _by_field_type:
        _by_field_type[field_type] = next(
            (serialize for cls, serialize in _SERIALIZERS if issubclass(field_type, cls)), None
        )
    return _by_field_type[field_type]


def _serializer_for_value_type(value_type: type) -> Any:
    if value_type not in _by_value_type:
        _by_value_type[value_type] = next(
            (serialize for cls, serialize in _SERIALIZERS if issubclass(value_type, cls)), None
        )
    return _by_value_type[value_type]


def to_avro_record(value: Any, field: Any = None) -> Any:  # noqa: PLR0911 -- one return per kind of value
    """Convert event data (or a key value) to what fastavro encodes, as openedx-events would.

    ``field`` is the attrs attribute holding ``value``, when there is one: its declared type picks
    a custom serializer, and ``None`` is allowed only where its default is ``None``.
    """
    value_type = type(value)
    if value_type in _PLAIN:
        # openedx-events' JSON round trip turns every NaN into the standard one (sign bit dropped).
        return _STANDARD_NAN if value_type is float and math.isnan(value) else value
    if value is None:
        if field is not None and field.default is not None:
            raise ValueError(f"field {field.name!r} is None but has no default of None")
        return None
    if field is not None:
        serialize = _serializer_for_field_type(field.type)
        if serialize is not None:
            return serialize(value)
    attributes = getattr(value_type, "__attrs_attrs__", None)
    if attributes is not None:
        return {attribute.name: to_avro_record(getattr(value, attribute.name), attribute) for attribute in attributes}
    if isinstance(value, dict):
        # openedx-events' JSON round trip sorts keys, which fixes the order of Avro map entries.
        converted = {_json_key(to_avro_record(key)): to_avro_record(item) for key, item in value.items()}
        return dict(sorted(converted.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_avro_record(item) for item in value]
    serialize = _serializer_for_value_type(value_type)
    if serialize is not None:
        return serialize(value)
    if isinstance(value, _PLAIN):  # subclasses such as str enums
        return value
    raise TypeError(f"cannot convert {value_type.__name__} to Avro; openedx-events has no serializer for it")


def _json_key(key: Any) -> str:
    """Map keys as the JSON round trip in openedx-events leaves them."""
    if key is True or key is False:
        return "true" if key else "false"
    return "null" if key is None else str(key)


def event_data_to_record(event_data: dict[str, Any]) -> dict[str, Any]:
    """The Avro record dict of a signal's event data (the kwargs of ``send_event``)."""
    return {name: to_avro_record(value) for name, value in event_data.items()}


def extract_event_key(event_data: dict[str, Any], event_key_field: str) -> Any:
    """Follow the dotted ``event_key_field`` through dicts and attributes to the key value.

    Raises:
        KeyError: naming the path and the step at which the lookup failed.

    """
    current: Any = event_data
    for name in event_key_field.split("."):
        if isinstance(current, dict):
            if name not in current:
                raise KeyError(f"event key path {event_key_field!r} failed at {name!r}: no such key")
            current = current[name]
        else:
            missing = _NO_DEFAULT
            found = getattr(current, name, missing)
            if found is missing:
                raise KeyError(f"event key path {event_key_field!r} failed at {name!r}: no such attribute")
            current = found
    return current
