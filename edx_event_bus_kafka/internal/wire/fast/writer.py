"""Avro writers generated per signal: event data (attrs objects) straight to the Avro binary body.

The reference encoding (openedx-events' ``serialize_event_data_to_bytes``) turns the attrs objects into
a dict with ``attr.asdict`` and a JSON round trip, then fastavro walks that dict against the schema;
``to_avro_record`` + fastavro skip the JSON but still build the dict. Here we generate, once per
signal, Python source that reads the attrs objects directly and emits the bytes, several times faster.

Only the Avro the openedx-events schemas use is covered; anything else in a schema makes the compile
functions return None. At run time any value the generated code is not sure about raises
:class:`FallBack` and the caller encodes that event through the reference path, which gives the same
bytes or the proper error. The generated code never guesses: where ``to_avro_record`` and
openedx-events could disagree (a plain ``str`` in a CourseKey field, say), it falls back too.
"""
from __future__ import annotations

import functools
import json
import struct
from collections.abc import Callable
from typing import Any, get_args, get_origin

import fastavro
from openedx_events.event_bus.avro.custom_serializers import DEFAULT_CUSTOM_SERIALIZERS
from openedx_events.event_bus.avro.serializer import AvroSignalSerializer

from edx_event_bus_kafka.internal.wire.fast.codegen import FallBack, SourceBuilder
from edx_event_bus_kafka.internal.wire.fast.codegen import Unsupported as _Unsupported

__all__ = ["FallBack"]


_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_SMALL_LIMIT = 1024  # longs in [0, 1024) and string lengths below it come from a table


def _varint(number: int) -> bytes:
    """Zig-zag varint of a signed 64-bit integer: Avro's ``long``."""
    zigzag = (number << 1) ^ (number >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append(0x80 | (zigzag & 0x7F))
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


_SMALL = tuple(_varint(number) for number in range(_SMALL_LIMIT))


def _long(number: int) -> bytes:
    """Encoded long; outside the 64-bit range fastavro raises, so we fall back."""
    if _LONG_MIN <= number <= _LONG_MAX:
        return _SMALL[number] if 0 <= number < _SMALL_LIMIT else _varint(number)
    raise FallBack(f"{number} does not fit in an Avro long")


_double = struct.Struct("<d").pack
# JSON writes every NaN as "NaN" and reads back float("nan"): sign and payload are lost on the way.
_NAN = _double(float("nan"))

# Custom types (CourseKey, datetime, ...) become text through openedx-events' serializers.
_CUSTOM: tuple[tuple[type, Callable[[Any], Any]], ...] = tuple(
    (ext.cls, ext.serialize) for ext in DEFAULT_CUSTOM_SERIALIZERS
)
_EXACT_PLAIN = frozenset({str, int, float, bool})


def _custom_index(declared: Any) -> int | None:
    """Position of the first custom serializer whose class ``declared`` is a subclass of."""
    if isinstance(declared, type):
        for index, (cls, _serialize) in enumerate(_CUSTOM):
            if issubclass(declared, cls):
                return index
    return None


def _same_code(first: Callable[[Any], Any], second: Callable[[Any], Any]) -> bool:
    """Whether two serializers are the same plain function body (``str(obj)``), so either may run."""
    if first is second:
        return True
    codes = [getattr(function, "__code__", None) for function in (first, second)]
    same_module = getattr(first, "__globals__", 0) is getattr(second, "__globals__", 1)
    if codes[0] is None or codes[1] is None or not same_module:
        return False
    same = all(getattr(codes[0], attr) == getattr(codes[1], attr) for attr in ("co_code", "co_consts", "co_names"))
    extras = ("__closure__", "__defaults__", "__kwdefaults__")
    return same and not any(getattr(function, extra, None) for function in (first, second) for extra in extras)


def _refuse(value: Any) -> str:
    raise FallBack(f"no text both reference paths agree on for a {type(value).__name__} here")


def _as_text(value: Any) -> str:
    """The plain ``str`` JSON carries for a ``str`` (subclass) value; anything else falls back."""
    if isinstance(value, str):
        return str.__str__(value)
    raise FallBack(f"a {type(value).__name__} where Avro expects a string")


def _converter(declared_index: int | None, value_type: type) -> Callable[[Any], Any]:
    """How a ``value_type`` value becomes text in a field whose declared type has ``declared_index``.

    openedx-events takes the first serializer matching the declared or the value type;
    ``to_avro_record`` passes exact plain types through, then tries the declared type, then the value
    type. We pick a serializer only where both choices give the same text.
    """
    if value_type is type(None):  # only nullable fields take None, and those test for it first
        return _refuse
    value_index = _custom_index(value_type)
    if declared_index is None:
        if value_index is None:
            return _as_text
        # A str subclass with a serializer: top-level JSON would not call it.
        return _refuse if issubclass(value_type, str) else _CUSTOM[value_index][1]
    chosen = _CUSTOM[declared_index][1]
    if value_type in _EXACT_PLAIN:
        return _refuse
    if value_index is not None and value_index < declared_index and not _same_code(_CUSTOM[value_index][1], chosen):
        return _refuse
    return chosen


class _Converters(dict[type, Callable[[Any], Any]]):
    """Value type -> converter for one declared type, filled on first sight of each value type."""

    def __init__(self, declared_index: int | None):
        super().__init__()
        self.declared_index = declared_index

    def __missing__(self, value_type: type) -> Callable[[Any], Any]:
        converter = self[value_type] = _converter(self.declared_index, value_type)
        return converter


_CONVERTERS = {index: _Converters(index) for index in (None, *range(len(_CUSTOM)))}


def _double_of_int(value: Any) -> bytes:
    """An int in a double field stays an int through JSON; fastavro converts it as struct does."""
    if type(value) is not int:
        raise FallBack(f"a {type(value).__name__} where Avro expects a double")
    return _double(value)


# Per primitive type: a statement checking local {v} (or None), and the expression giving its bytes (or None).
_SIMPLE = {
    "long": (
        "if type({v}) is not int: raise FallBack('long')",
        f"_S[{{v}}] if 0 <= {{v}} < {_SMALL_LIMIT} else _long({{v}})",
    ),
    "boolean": ("if type({v}) is not bool: raise FallBack('boolean')", "b'\\x01' if {v} else b'\\x00'"),
    "double": (None, "(_double({v}) if {v} == {v} else _NAN) if type({v}) is float else _double_of_int({v})"),
    "null": ("if {v} is not None: raise FallBack('null')", None),
}
_PRIMITIVES = frozenset({"string", *_SIMPLE})
_BRANCH_1 = b"\x02"  # union index 1 (zig-zag): the non-null branch

_Pieces = list[str | bytes]  # expressions giving bytes, or literal bytes


def _join(pieces: _Pieces) -> str:
    """Expression concatenating ``pieces``, with adjacent literals merged."""
    merged: _Pieces = []
    for piece in pieces:
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        else:
            merged.append(piece)
    rendered = [repr(piece) if isinstance(piece, bytes) else piece for piece in merged]
    if len(rendered) == 1:
        return rendered[0]
    return f"b''.join(({', '.join(rendered)},))" if rendered else "b''"


class _Source(SourceBuilder):
    """The lines of one generated writer and the names they refer to."""

    def __init__(self) -> None:
        super().__init__({"_S": _SMALL, "_long": _long, "_as_text": _as_text, "_double": _double, "_NAN": _NAN,
                          "_double_of_int": _double_of_int})

    def encode(self, schema: Any, src: str, declared: Any, by_declared: bool, depth: int) -> _Pieces:
        """Emit code encoding local ``src``; ``by_declared``: the declared type picks serializers."""
        if isinstance(schema, dict) and set(schema) == {"type"} and schema["type"] in _PRIMITIVES:
            schema = schema["type"]
        if isinstance(schema, str) and schema in self.named:
            return self.record(self.named[schema], src, declared, depth)
        if schema == "string":
            return self.string(src, declared, by_declared, depth)
        if isinstance(schema, str) and schema in _SIMPLE:
            check, piece = _SIMPLE[schema]
            if check:
                self.line(depth, check.format(v=src))
            return [piece.format(v=src)] if piece else []
        if isinstance(schema, list):
            return self.nullable(schema, src, declared, by_declared, depth)
        kind = schema.get("type") if isinstance(schema, dict) else None
        if kind == "record":
            self.named.setdefault(schema.get("name"), schema)
            return self.record(schema, src, declared, depth)
        if kind in ("array", "map"):
            return self.collection(schema, src, declared, depth)
        raise _Unsupported(f"schema {schema!r}")

    def string(self, src: str, declared: Any, by_declared: bool, depth: int) -> _Pieces:
        index = _custom_index(declared) if by_declared else None
        converters = self.constant(_CONVERTERS[index], "C")
        if index is None:
            self.line(depth, f"if type({src}) is not str:")
            self.line(depth + 1, f"{src} = {converters}[type({src})]({src})")
            self.line(depth + 1, f"if type({src}) is not str: {src} = _as_text({src})")
        else:
            self.line(depth, f"{src} = {converters}[type({src})]({src})")
            self.line(depth, f"if type({src}) is not str: {src} = _as_text({src})")
        data, size = self.new("b"), self.new("n")
        self.line(depth, f"{data} = {src}.encode(); {size} = len({data})")
        return [f"_S[{size}] if {size} < {_SMALL_LIMIT} else _long({size})", data]

    def nullable(self, schema: list[Any], src: str, declared: Any, by_declared: bool, depth: int) -> _Pieces:
        """``["null", X]``: None is branch 0, anything else branch 1."""
        if len(schema) != 2 or schema[0] != "null" or schema[1] == "null" or isinstance(schema[1], list):
            raise _Unsupported(f"union {schema!r}")
        out = self.new("u")
        self.line(depth, f"if {src} is None: {out} = b'\\x00'")
        self.line(depth, "else:")
        pieces = self.encode(schema[1], src, declared, by_declared, depth + 1)
        self.line(depth + 1, f"{out} = {_join([_BRANCH_1, *pieces])}")
        return [out]

    def record(self, schema: dict[str, Any], src: str, cls: Any, depth: int) -> _Pieces:
        """A record read from an instance of exactly the attrs class ``cls``, fields paired by name."""
        attributes = {attribute.name: attribute for attribute in getattr(cls, "__attrs_attrs__", None) or ()}
        fields = schema.get("fields") or []
        names = [field.get("name") for field in fields]
        if not attributes or sorted(names) != sorted(attributes) or schema.get("name") in self.open_records:
            raise _Unsupported(f"record {schema.get('name')!r} for {cls!r}")
        self.line(depth, f"if type({src}) is not {self.constant(cls, 'K')}: raise FallBack('record')")
        self.open_records.add(schema["name"])
        pieces: _Pieces = []
        for field in fields:
            attribute = attributes[field["name"]]
            # openedx-events makes exactly the default=None attributes nullable, and allows None only there.
            if not attribute.name.isidentifier() or isinstance(field["type"], list) != (attribute.default is None):
                raise _Unsupported(f"field {attribute.name!r}")
            value = self.new("v")
            self.line(depth, f"{value} = {src}.{attribute.name}")
            pieces += self.encode(field["type"], value, attribute.type, True, depth)
        self.open_records.discard(schema["name"])
        return pieces

    def collection(self, schema: dict[str, Any], src: str, declared: Any, depth: int) -> _Pieces:
        """Arrays and maps: if non-empty, a count and the items, then a 0 (as fastavro writes them)."""
        is_map = schema["type"] == "map"
        items = schema.get("values" if is_map else "items")
        if not isinstance(items, str | dict):
            raise _Unsupported(f"{schema['type']} of {items!r}")
        args = get_args(declared) if get_origin(declared) in (dict, list) else ()
        item_type = args[-1] if args else None
        out, parts, item = self.new("c"), self.new("p"), self.new("i")
        if is_map:  # JSON sorted the keys in the reference encoding
            self.line(depth, f"if type({src}) is not dict: raise FallBack('map')")
        else:
            self.line(depth, f"if type({src}) is not list and type({src}) is not tuple: raise FallBack('array')")
        self.line(depth, f"if not {src}: {out} = b'\\x00'")
        self.line(depth, "else:")
        self.line(depth + 1, f"{parts} = [_long(len({src}))]")
        if is_map:
            key = self.new("k")
            self.line(depth + 1, f"for {key} in sorted({src}):")
            self.line(depth + 2, f"if type({key}) is not str: raise FallBack('map key')")
            self.line(depth + 2, f"{item} = {src}[{key}]")
            pieces = self.string(key, None, False, depth + 2)
        else:
            self.line(depth + 1, f"for {item} in {src}:")
            pieces = []
        # Items and map values get openedx-events' serializers by their own type only.
        pieces += self.encode(items, item, item_type, False, depth + 2)
        rendered = [repr(piece) if isinstance(piece, bytes) else piece for piece in pieces]
        self.line(depth + 2, f"{parts} += ({', '.join(rendered)},)" if rendered else "pass")
        self.line(depth + 1, f"{parts}.append(b'\\x00'); {out} = b''.join({parts})")
        return [out]

    def function(self, argument: str, pieces: _Pieces, filename: str) -> Callable[[Any], bytes]:
        """Compile the emitted lines into ``write(argument)``; surprises become FallBack."""
        return self.compile("write", argument, [], [f"return {_join(pieces)}"], filename)


@functools.cache
def compile_event_writer(signal: Any) -> Callable[[dict[str, Any]], bytes] | None:
    """A fast writer of ``signal``'s Avro value body, or None if its schema is outside what we generate."""
    try:
        schema = AvroSignalSerializer(signal).schema
        fastavro.parse_schema(schema)  # what fastavro rejects, the reference path must report
    except Exception:  # noqa: BLE001 -- openedx-events raises bare Exception; the reference path reports it
        return None
    source = _Source()
    fields = schema["fields"]
    if sorted(field["name"] for field in fields) != sorted(signal.init_data):
        return None
    source.line(2, f"if type(data) is not dict or len(data) != {len(fields)}: raise FallBack('event data keys')")
    pieces: _Pieces = []
    try:
        for field in fields:
            value = source.new("v")
            source.line(2, f"{value} = data[{field['name']!r}]")
            # Top-level values reach openedx-events' serializers without a field: only their own type counts.
            pieces += source.encode(field["type"], value, signal.init_data[field["name"]], False, 2)
    except _Unsupported:
        return None
    return source.function("data", pieces, f"<avro writer for {signal.event_type}>")


def compile_key_writer(key_schema_json: Any) -> Callable[[Any], bytes] | None:
    """A fast writer for event keys whose schema (JSON text or data, field or type) is a string, else None."""
    schema = key_schema_json
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            pass  # a bare type name such as ``string``
    while isinstance(schema, dict) and "logicalType" not in schema:
        schema = schema.get("type")
    if schema != "string":
        return None
    source = _Source()
    pieces = source.string("key", None, False, 2)
    return source.function("key", pieces, "<avro key writer>")
