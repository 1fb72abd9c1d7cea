"""Avro schema-resolution compatibility checks for the Schema Registry test stand-in.

``can_read(reader, writer)`` answers "can data written with ``writer`` be decoded with ``reader``?"
following the schema resolution rules of the Avro specification:

* records match by full name (or a reader alias); reader fields absent from the writer need a
  default; writer fields absent from the reader are skipped;
* primitives match themselves or a promotion (int -> long/float/double, long -> float/double,
  float -> double, string <-> bytes); logical types are ignored, as resolution ignores them;
* enums match by name and every writer symbol must be a reader symbol, unless the reader has a default;
* fixed types match by name and size; arrays and maps recurse into items and values;
* every branch of a writer union must be readable; a non-union writer must be readable by some
  branch of a reader union.

Registry compatibility levels are built on it: BACKWARD is ``can_read(new, old)``, FORWARD is
``can_read(old, new)`` and FULL is both.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
# writer type -> reader types that may read it
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _load(schema: Any) -> Any:
    """Accept a parsed schema, a JSON schema string, or a bare type name such as ``string``."""
    if isinstance(schema, str):
        try:
            return json.loads(schema)
        except ValueError:
            return schema
    return schema


class _Names:
    """The named types of one schema, keyed by full name; references to them become full-name strings."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, Any]] = {}

    def add(self, schema: Any, namespace: str | None = None) -> Any:
        """Return ``schema`` in the comparison form, registering every named type it defines."""
        if isinstance(schema, str):
            return schema if schema in PRIMITIVES else _fullname(schema, namespace)
        if isinstance(schema, list):
            return [self.add(branch, namespace) for branch in schema]
        if not isinstance(schema, dict):
            raise ValueError(f"not an Avro schema: {schema!r}")
        kind = schema.get("type")
        if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _NAMED | {"array", "map"}):
            return self.add(kind, namespace)  # {"type": "int", "logicalType": ...} or a wrapped reference
        if kind == "array":
            return {"type": "array", "items": self.add(schema["items"], namespace)}
        if kind == "map":
            return {"type": "map", "values": self.add(schema["values"], namespace)}
        if kind not in _NAMED:
            raise ValueError(f"not an Avro schema: {schema!r}")
        fullname = _fullname(schema["name"], schema.get("namespace", namespace))
        inner = fullname.rpartition(".")[0] or None
        node: dict[str, Any] = {
            "type": "record" if kind == "error" else kind,
            "name": fullname,
            "aliases": [_fullname(alias, inner) for alias in schema.get("aliases", [])],
        }
        # Register before descending so that a recursive reference resolves to this node.
        self.types[fullname] = node
        if kind in ("record", "error"):
            node["fields"] = [
                {
                    "name": field["name"],
                    "aliases": list(field.get("aliases", [])),
                    "has_default": "default" in field,
                    "type": self.add(field["type"], inner),
                }
                for field in schema.get("fields", [])
            ]
        elif kind == "enum":
            node["symbols"] = list(schema.get("symbols", []))
            node["default"] = schema.get("default")
        else:
            node["size"] = schema.get("size")
        return fullname

    def resolve(self, schema: Any) -> Any:
        """Replace a named-type reference by its definition; other schemas are returned unchanged."""
        if not isinstance(schema, str) or schema in PRIMITIVES:
            return schema
        # An unqualified name that is not in the enclosing namespace may live in the null namespace.
        found = self.types.get(schema) or self.types.get(schema.rpartition(".")[2])
        if found is None:
            raise ValueError(f"unknown Avro type {schema!r}")
        return found


def _describe(schema: Any) -> str:
    if isinstance(schema, list):
        return "union[" + ", ".join(_describe(branch) for branch in schema) + "]"
    if isinstance(schema, dict):
        return str(schema.get("name") or schema["type"])
    return str(schema)


def _kind(schema: Any) -> str:
    return schema if isinstance(schema, str) else "union" if isinstance(schema, list) else str(schema["type"])


class _Checker:
    def __init__(self, reader: _Names, writer: _Names) -> None:
        self.reader = reader
        self.writer = writer
        # Record pairs being compared further up the stack: a recursive schema revisiting one is
        # assumed compatible (the rest of the walk decides), which keeps the walk finite.
        self.in_progress: set[tuple[str, str]] = set()

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        reader, writer = self.reader.resolve(reader), self.writer.resolve(writer)
        if isinstance(writer, list):
            return [message for i, branch in enumerate(writer) for message in self.check(reader, branch, f"{path}/{i}")]
        if isinstance(reader, list):
            if any(not self.check(branch, writer, path) for branch in reader):
                return []
            return [f"{path or '/'}: MISSING_UNION_BRANCH reader {_describe(reader)} has no branch that can read "
                    f"writer type {_describe(writer)}"]
        return self._check_single(reader, writer, path)

    def _check_single(self, reader: Any, writer: Any, path: str) -> list[str]:
        kind = _kind(reader)
        if kind != _kind(writer):
            if kind in _PROMOTIONS.get(_kind(writer), ()):
                return []
            return [f"{path or '/'}: TYPE_MISMATCH reader type {_describe(reader)} cannot read "
                    f"writer type {_describe(writer)}"]
        if kind in ("array", "map"):
            key = "items" if kind == "array" else "values"
            return self.check(reader[key], writer[key], f"{path}/{key}")
        if kind in _NAMED:
            return self._check_named(kind, reader, writer, path)
        return []  # the same primitive

    def _check_named(self, kind: str, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        where = path or "/"
        if reader["name"] != writer["name"] and writer["name"] not in reader["aliases"]:
            return [f"{where}: NAME_MISMATCH reader {kind} {reader['name']} cannot read writer {kind} {writer['name']}"]
        if kind == "fixed" and reader["size"] != writer["size"]:
            return [f"{where}: FIXED_SIZE_MISMATCH reader {reader['name']} has size {reader['size']}, "
                    f"writer has size {writer['size']}"]
        if kind == "enum":
            missing = [symbol for symbol in writer["symbols"] if symbol not in reader["symbols"]]
            if missing and reader["default"] is None:
                return [f"{where}: MISSING_ENUM_SYMBOLS reader enum {reader['name']} lacks writer symbols "
                        f"{missing} and has no default"]
        if kind == "record":
            return self._check_record(reader, writer, path)
        return []

    def _check_record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        pair = (reader["name"], writer["name"])
        if pair in self.in_progress:
            return []
        self.in_progress.add(pair)
        try:
            writer_fields = {field["name"]: field for field in writer["fields"]}
            messages: list[str] = []
            for field in reader["fields"]:
                names = [field["name"], *field["aliases"]]
                match = next((writer_fields[name] for name in names if name in writer_fields), None)
                if match is not None:
                    messages += self.check(field["type"], match["type"], f"{path}/fields/{field['name']}")
                elif not field["has_default"]:
                    messages.append(f"{path}/fields/{field['name']}: READER_FIELD_MISSING_DEFAULT_VALUE reader field "
                                    f"{field['name']!r} of {reader['name']} is not in the writer and has no default")
            return messages
        finally:
            self.in_progress.discard(pair)


def can_read(
    reader_schema: dict[str, Any] | str | list[Any],
    writer_schema: dict[str, Any] | str | list[Any],
    *,
    reader_named: Iterable[Any] = (),
    writer_named: Iterable[Any] = (),
) -> list[str]:
    """Return why data written with ``writer_schema`` cannot be read with ``reader_schema`` (empty: it can).

    ``reader_named``/``writer_named`` are schemas that define named types the main schema refers to
    (Schema Registry references), in dependency order. Raises ``ValueError`` for a malformed schema.
    """
    try:
        tables = []
        for schema, named in ((reader_schema, reader_named), (writer_schema, writer_named)):
            names = _Names()
            for dependency in named:
                names.add(_load(dependency))
            tables.append((names, names.add(_load(schema))))
        (reader_names, reader), (writer_names, writer) = tables
        return _Checker(reader_names, writer_names).check(reader, writer, "")
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed Avro schema: missing or wrong-typed {error}") from error
