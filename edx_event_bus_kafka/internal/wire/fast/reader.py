"""Avro readers generated per signal: the Avro binary body straight to event data (attrs objects).

The reference decoding reads the body into a dict with ``fastavro.schemaless_reader``, then
openedx-events' ``AvroSignalDeserializer.from_dict`` walks that dict along the signal's attrs classes.
Here we generate, once per signal, Python source that reads the bytes and builds the attrs objects
directly: the mirror image of :mod:`.avro_writer`, several times faster.

A generated reader only understands bodies written with the signal's own schema (the caller makes
sure the writer schema is ours) and only the Avro the writer covers; anything else in a schema makes
:func:`compile_event_reader` return None. At run time anything unusual raises :class:`FallBack`:
truncated or trailing bytes, a malformed varint, bad UTF-8, a union index other than 0 or 1, a value
``from_dict`` would choke on. The caller then decodes the body through the reference path, which gives
the same result or the proper error. The generated code never returns what the reference would not:
it calls the same custom-type deserializers and the same attrs constructors with the same values, and
it keeps ``from_dict``'s quirk of leaving falsy values out for attributes that have a default.
"""
from __future__ import annotations

import functools
import keyword
import struct
import types
from collections.abc import Callable
from typing import Any, get_args, get_origin

import attr
import fastavro
from opaque_keys import OpaqueKey
from openedx_events.event_bus.avro.custom_serializers import DEFAULT_CUSTOM_SERIALIZERS
from openedx_events.event_bus.avro.deserializer import DEFAULT_DESERIALIZERS, AvroSignalDeserializer
from openedx_events.event_bus.avro.serializer import AvroSignalSerializer
from openedx_events.event_bus.avro.types import PYTHON_TYPE_TO_AVRO_MAPPING, SIMPLE_PYTHON_TYPE_TO_AVRO_MAPPING

from edx_event_bus_kafka.internal.wire.fast.codegen import FallBack, SourceBuilder
from edx_event_bus_kafka.internal.wire.fast.codegen import Unsupported as _Unsupported

__all__ = ["FallBack"]


# Single-byte varints (below 0x80) by byte: the zig-zag decoded long, and the same as a length.
_ZIGZAG = tuple((byte >> 1) ^ -(byte & 1) for byte in range(0x80))
_PAST_ANY_BODY = 1 << 64  # odd bytes are negative lengths: this one fails the generated bounds check
_LENGTHS = tuple(_PAST_ANY_BODY if byte & 1 else byte >> 1 for byte in range(0x80))
_BOOLEANS = (False, True)  # any other byte is an IndexError, so FallBack
_double = struct.Struct("<d").unpack_from  # struct.error (so FallBack) when fewer than 8 bytes are left


def _long(body: bytes, position: int) -> tuple[int, int]:
    """The zig-zag varint at ``position`` and the position after it.

    At most ten bytes, the tenth holding only bit 63: beyond that fastavro's C reader wraps around,
    so we leave such values to it.
    """
    accumulated = 0
    for shift in range(0, 70, 7):
        byte = body[position]
        position += 1
        accumulated |= (byte & 0x7F) << shift
        if byte < 0x80:
            if shift == 63 and byte > 1:
                raise FallBack("varint beyond 64 bits")
            return (accumulated >> 1) ^ -(accumulated & 1), position
    raise FallBack("varint longer than ten bytes")


def _length(body: bytes, position: int) -> tuple[int, int]:
    """A multi-byte string length; negative ones fall back."""
    length, position = _long(body, position)
    if length < 0:
        raise FallBack("negative string length")
    return length, position


class _Memo(dict[str, Any]):
    """Text -> result of one OpaqueKey deserializer, filled on first sight of each text.

    Parsing a course key is most of the cost of reading an event, and the same few keys come again and
    again. OpaqueKeys are immutable (``copy`` returns the key itself), so handing out one instance per
    text is as good as a fresh one. Failures are not remembered: they raise FallBack every time.
    """

    def __init__(self, deserialize: Callable[[str], Any]):
        super().__init__()
        self.deserialize = deserialize

    def __missing__(self, text: str) -> Any:
        value = self.deserialize(text)
        if len(self) >= _MEMO_SIZE:
            self.clear()  # a crude bound, enough for the keys of one deployment
        self[text] = value
        return value


_MEMO_SIZE = 4096
# Only openedx-events' own OpaqueKey deserializers: a custom deserializer may not be pure.
_MEMOS = {  # by id: a custom deserializer need not be hashable
    id(ext.deserialize): _Memo(ext.deserialize)
    for ext in DEFAULT_CUSTOM_SERIALIZERS
    if isinstance(ext.cls, type) and issubclass(ext.cls, OpaqueKey)
}

# What from_dict does with a decoded value at a position declared as some type (besides calling a deserializer).
_SAME = "same"  # hands it over as it is
_FAIL = "fail"  # raises TypeError
_RECORD = "record"  # builds the attrs class from the record dict
# Converts each item (list) or value (dict) along the declared item type: List[attrs], Dict[str, List[str]], ...
_NESTED = "nested"


def _converts_nested_collections() -> bool:
    """Whether the installed openedx-events handles collections of non-simple items (11.0 and later).

    Its schemas and its ``from_dict`` learnt them in the same release; before, ``from_dict`` raises
    TypeError for them (and no schema has them), so we probe the schema side.
    """
    probe = types.SimpleNamespace(event_type="org.openedx.probe.v1", init_data={"probe": list[list[str]]})
    try:
        AvroSignalSerializer(probe).schema  # noqa: B018 -- building the schema is the probe
    except Exception:  # noqa: BLE001 -- openedx-events raises bare Exception or TypeError
        return False
    return True


_NESTED_OR_FAIL = _NESTED if _converts_nested_collections() else _FAIL


def _collection_conversion(origin: Any, args: tuple[Any, ...]) -> Any:
    """What ``from_dict`` does with a decoded list (``origin`` list) or dict (``origin`` dict)."""
    if origin is list and args:  # from_dict compares with ==, the same for classes
        return _SAME if args[0] in SIMPLE_PYTHON_TYPE_TO_AVRO_MAPPING else _NESTED_OR_FAIL
    if origin is dict and len(args) == 2:
        if all(arg in SIMPLE_PYTHON_TYPE_TO_AVRO_MAPPING for arg in args):
            return _SAME
        return _NESTED_OR_FAIL if args[0] is str else _FAIL  # nested values only under str keys
    return _FAIL  # no annotation


def _conversion(declared: Any, deserializers: dict[Any, Any]) -> Any:
    """_SAME, _FAIL, _RECORD, _NESTED or the deserializer to call, checked in ``from_dict``'s order."""
    try:
        if deserializer := deserializers.get(declared):
            return deserializer
        if declared in PYTHON_TYPE_TO_AVRO_MAPPING:
            return _SAME
        origin = get_origin(declared)
        if origin is list or origin is dict:
            return _collection_conversion(origin, get_args(declared))
    except TypeError:  # an unhashable declared type: the reference lookup raises too
        return _FAIL
    return _RECORD if hasattr(declared, "__attrs_attrs__") else _FAIL


_PRIMITIVES = frozenset({"string", "long", "boolean", "double", "null"})
_ITEMS = _PRIMITIVES - {"null"}  # each item takes at least one byte, so counts can be checked against the body
_RECORD_KEYS = frozenset({"name", "type", "fields", "doc"})


def _primitive_name(schema: Any) -> Any:
    """``{"type": "long"}`` as ``"long"``; anything else unchanged."""
    if isinstance(schema, dict) and set(schema) == {"type"} and schema["type"] in _PRIMITIVES:
        return schema["type"]
    return schema


class _Source(SourceBuilder):
    """The lines of one generated reader and the names they refer to.

    The generated function keeps the body in ``body``, its length in ``end`` and the read position in
    ``p``; ``n`` and ``q`` are scratch names for string bounds.
    """

    def __init__(self, deserializers: dict[Any, Any]):
        super().__init__({"_ZZ": _ZIGZAG, "_LEN": _LENGTHS, "_BOOL": _BOOLEANS, "_double": _double,
                          "_long": _long, "_length": _length})
        self.deserializers = deserializers

    def value(self, schema: Any, declared: Any, target: str, depth: int, default: str | None) -> None:
        """Emit code reading the value at ``p`` into local ``target``, as ``from_dict`` would pass it on.

        ``default`` is None where ``from_dict`` converts every value (top level, attributes without a
        default), else the expression giving the attribute's default, which replaces falsy values.
        """
        schema = _primitive_name(schema)
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        conversion = _conversion(declared, self.deserializers)
        if isinstance(schema, list):
            self.nullable(schema, declared, target, depth, default)
            return
        kind = schema.get("type") if isinstance(schema, dict) else schema
        if kind == "record":
            if conversion is not _RECORD:
                raise _Unsupported(f"record {schema.get('name')!r} for {declared!r}")
            self.record(schema, declared, target, depth)  # never empty, so never falsy: no default applies
            return
        if conversion is _RECORD:
            raise _Unsupported(f"attrs class {declared!r} for {schema!r}")
        if conversion is _NESTED:
            if kind != {list: "array", dict: "map"}.get(get_origin(declared)):
                raise _Unsupported(f"{kind!r} for {declared!r}")
            self.collection(schema, target, depth, declared)
            conversion = _SAME  # its items are converted; from_dict passes the new list or dict on as it is
        elif isinstance(schema, str) and schema in _PRIMITIVES:
            self.primitive(schema, target, depth)
        elif kind in ("array", "map"):
            self.collection(schema, target, depth)
        else:
            raise _Unsupported(f"schema {schema!r}")
        memo = _MEMOS.get(id(conversion))
        if schema == "string" and memo is not None and memo.deserialize is conversion:  # text: the memo applies
            self.convert(memo, target, depth, default, memo=True)
        else:
            self.convert(conversion, target, depth, default)

    def primitive(self, kind: str, target: str, depth: int) -> None:
        """Read a string, long, boolean, double or null into ``target``."""
        if kind == "string":
            self.line(depth, "n = body[p]")
            self.line(depth, "if n < 128: n = _LEN[n]; p += 1")
            self.line(depth, "else: n, p = _length(body, p)")
            self.line(depth, "q = p + n")
            self.line(depth, "if q > end: raise FallBack('string runs past the body')")
            self.line(depth, f"{target} = body[p:q].decode(); p = q")
        elif kind == "long":
            self.line(depth, f"{target} = body[p]")
            self.line(depth, f"if {target} < 128: {target} = _ZZ[{target}]; p += 1")
            self.line(depth, f"else: {target}, p = _long(body, p)")
        elif kind == "boolean":
            self.line(depth, f"{target} = _BOOL[body[p]]; p += 1")
        elif kind == "double":
            self.line(depth, f"{target} = _double(body, p)[0]; p += 8")
        else:
            self.line(depth, f"{target} = None")

    def convert(self, conversion: Any, target: str, depth: int, default: str | None, memo: bool = False) -> None:
        """Turn the decoded value in ``target`` into what ``from_dict`` passes on (``memo``: a _Memo of text)."""
        if conversion is _SAME:
            if default is not None:
                self.line(depth, f"if not {target}: {target} = {default}")
        elif conversion is _FAIL or conversion is _RECORD:
            if default is None:
                self.line(depth, "raise FallBack('from_dict cannot convert this value')")
            else:
                self.line(depth, f"if {target}: raise FallBack('from_dict cannot convert this value')")
                self.line(depth, f"{target} = {default}")
        else:
            function = self.constant(conversion, "M" if memo else "F")
            call = f"{function}[{target}]" if memo else f"{function}({target})"
            self.line(depth, f"{target} = {call}" + ("" if default is None else f" if {target} else {default}"))

    def nullable(self, schema: list[Any], declared: Any, target: str, depth: int, default: str | None) -> None:
        """``["null", X]``: index 1 (byte 2) is X, index 0 (byte 0) is None; other indexes fall back."""
        other = _primitive_name(schema[1]) if len(schema) == 2 else None
        if len(schema) != 2 or schema[0] != "null" or other in (None, "null") or isinstance(other, list):
            raise _Unsupported(f"union {schema!r}")
        tag = self.new("t")
        self.line(depth, f"{tag} = body[p]; p += 1")
        self.line(depth, f"if {tag} == 2:")
        self.value(other, declared, target, depth + 1, default)
        self.line(depth, f"elif {tag} == 0:")
        conversion = _conversion(declared, self.deserializers)
        if default is not None:  # None is falsy: from_dict leaves it out
            self.line(depth + 1, f"{target} = {default}")
        elif conversion is _SAME:
            self.line(depth + 1, f"{target} = None")
        elif conversion is _FAIL or conversion is _RECORD or conversion is _NESTED:  # None converts to none of them
            self.line(depth + 1, "raise FallBack('from_dict cannot convert None here')")
        else:  # the deserializer decides what None gives (or raises)
            self.line(depth + 1, f"{target} = {self.constant(conversion, 'F')}(None)")
        self.line(depth, "else: raise FallBack('union index')")

    def record(self, schema: dict[str, Any], cls: Any, target: str, depth: int) -> None:
        """A record built as ``cls`` with a keyword per field: fields and attributes paired by name."""
        name = schema.get("name")
        if not isinstance(name, str) or "." in name or not set(schema) <= _RECORD_KEYS or name in self.open_records:
            raise _Unsupported(f"record {name!r}")
        attributes = {attribute.name: attribute for attribute in getattr(cls, "__attrs_attrs__", None) or ()}
        fields = schema.get("fields") or []
        names = [str(field.get("name")) for field in fields]
        if not attributes or sorted(names) != sorted(attributes):
            raise _Unsupported(f"record {name!r} for {cls!r}")
        self.named.setdefault(name, schema)
        self.open_records.add(name)
        arguments = []
        for field in fields:
            attribute = attributes[field["name"]]
            value = self.new("v")
            self.value(field["type"], attribute.type, value, depth, self.default(attribute))
            arguments.append(f"{attribute.name}={value}")
        self.open_records.discard(name)
        self.line(depth, f"{target} = {self.constant(cls, 'K')}({', '.join(arguments)})")

    def default(self, attribute: Any) -> str | None:
        """Expression for what the attrs constructor uses when ``from_dict`` leaves ``attribute`` out."""
        usable = attribute.name.isidentifier() and not keyword.iskeyword(attribute.name)
        if not usable or not attribute.init or getattr(attribute, "alias", attribute.name) != attribute.name:
            raise _Unsupported(f"attribute {attribute.name!r}: from_dict passes it by name")
        default = attribute.default
        if default is attr.NOTHING:
            return None
        if isinstance(default, attr.Factory):  # type: ignore[arg-type]
            if default.takes_self:
                raise _Unsupported(f"attribute {attribute.name!r}: factory takes self")
            return f"{self.constant(default.factory, 'F')}()"  # called exactly when attrs would call it
        return "None" if default is None else self.constant(default, "D")  # the object attrs itself passes

    def collection(self, schema: dict[str, Any], target: str, depth: int, declared: Any = None) -> None:
        """Arrays and maps: blocks of items until a zero count, into a list or dict.

        Without ``declared`` the items are primitives that ``from_dict`` passes on as decoded; with it
        (a ``List[X]`` or ``Dict[str, X]`` of _NESTED conversion) each item is read and converted as an X.
        """
        is_map = schema["type"] == "map"
        items = _primitive_name(schema.get("values" if is_map else "items"))
        if declared is None and (not isinstance(items, str) or items not in _ITEMS):
            raise _Unsupported(f"{schema['type']} of {items!r}")
        count, size, item = self.new("c"), self.new("s"), self.new("i")
        self.line(depth, f"{target} = {{}}" if is_map else f"{target} = []")
        self.line(depth, "while True:")
        self.line(depth + 1, f"{count} = body[p]")
        self.line(depth + 1, f"if {count} < 128: {count} = _ZZ[{count}]; p += 1")
        self.line(depth + 1, f"else: {count}, p = _long(body, p)")
        self.line(depth + 1, f"if not {count}: break")
        # A negative count is followed by the block's size in bytes, which fastavro reads and ignores.
        self.line(depth + 1, f"if {count} < 0: {count} = -{count}; {size}, p = _long(body, p)")
        # Every item takes a byte or more (a record of nulls only would not: it falls back, still correct).
        self.line(depth + 1, f"if {count} > end - p: raise FallBack('more items than bytes')")
        self.line(depth + 1, f"for _ in range({count}):")
        key = self.new("k") if is_map else ""
        if is_map:
            self.primitive("string", key, depth + 2)
        if declared is None:
            self.primitive(items, item, depth + 2)
        else:  # from_dict converts each item with no falsy-value rule, as at the top level
            self.value(items, get_args(declared)[-1], item, depth + 2, None)
        self.line(depth + 2, f"{target}[{key}] = {item}" if is_map else f"{target}.append({item})")

    def function(self, result: str, filename: str) -> Callable[[bytes], dict[str, Any]]:
        """Compile the emitted lines into ``read(body)``; the whole body must be read, surprises become FallBack."""
        return self.compile("read", "body", ["end = len(body)", "p = 0"],
                            ["if p != end: raise FallBack('bytes left after the event')", f"return {result}"], filename)


@functools.cache
def compile_event_reader(signal: Any) -> Callable[[bytes], dict[str, Any]] | None:
    """A fast reader of Avro value bodies written with ``signal``'s own schema, or None outside what we generate.

    The reader returns what ``AvroSignalDeserializer(signal).from_dict`` makes of
    ``fastavro.schemaless_reader`` on the body, or raises :class:`FallBack`.
    """
    try:
        schema = AvroSignalSerializer(signal).schema
        fastavro.parse_schema(schema)  # what fastavro rejects, the reference path must report
        deserializers = {**DEFAULT_DESERIALIZERS, **(AvroSignalDeserializer(signal).deserializers or {})}
    except Exception:  # noqa: BLE001 -- openedx-events raises bare Exception; the reference path reports it
        return None
    fields = schema.get("fields") or []
    if sorted(str(field.get("name")) for field in fields) != sorted(signal.init_data):
        return None
    source = _Source(deserializers)
    source.named[schema["name"]] = schema
    source.open_records.add(schema["name"])
    values: dict[str, str] = {}
    try:
        for field in fields:
            value = values[field["name"]] = source.new("v")
            # Top-level values are always converted: from_dict's falsy-value rule is for attributes only.
            source.value(field["type"], signal.init_data[field["name"]], value, 2, None)
        result = "{" + ", ".join(f"{name!r}: {values[name]}" for name in signal.init_data) + "}"
        return source.function(result, f"<avro reader for {signal.event_type}>")
    except (_Unsupported, RecursionError, SyntaxError):  # the last two: schemas nested beyond Python's limits
        return None
