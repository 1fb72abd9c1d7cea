"""Direct checks of the Avro schema-resolution rules behind the Schema Registry stand-in."""
from __future__ import annotations

from typing import Any

import pytest

from tests.support.avro_compatibility import can_read


def _record(fields: list[dict[str, Any]], name: str = "Event", namespace: str | None = "org.openedx") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "record", "name": name, "fields": fields}
    return {**schema, "namespace": namespace} if namespace else schema


def _enum(symbols: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Mode", "symbols": symbols, **extra}


def test_primitive_promotions_only_widen():
    """An int reads as long/float/double and string/bytes interchange, but nothing narrows."""
    assert can_read("long", "int") == []
    assert can_read("double", "float") == []
    assert can_read('"bytes"', '"string"') == []
    assert can_read("string", "bytes") == []
    assert can_read("int", "long")
    assert can_read("float", "double")


def test_record_fields_need_defaults_only_when_missing_from_the_writer():
    """A reader-only field needs a default; writer-only fields are ignored; messages name the field."""
    writer = _record([{"name": "a", "type": "int"}, {"name": "gone", "type": "string"}])
    assert can_read(_record([{"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 1}]), writer) == []
    [message] = can_read(_record([{"name": "a", "type": "int"}, {"name": "b", "type": "int"}]), writer)
    assert "/fields/b" in message and "READER_FIELD_MISSING_DEFAULT_VALUE" in message


def test_records_match_by_full_name_or_reader_alias():
    """Same simple name in another namespace does not match, unless the reader lists it as an alias."""
    writer = _record([], namespace="org.other")
    assert any("NAME_MISMATCH" in message for message in can_read(_record([]), writer))
    assert can_read({**_record([]), "aliases": ["org.other.Event"]}, writer) == []


def test_field_aliases_match_renamed_writer_fields():
    """A reader field whose alias is the writer's field name reads that field."""
    writer = _record([{"name": "old", "type": "int"}])
    assert can_read(_record([{"name": "new", "type": "long", "aliases": ["old"]}]), writer) == []


def test_enum_symbols_must_be_known_unless_the_reader_has_a_default():
    """A writer symbol unknown to the reader is incompatible, unless the reader enum has a default."""
    assert can_read(_enum(["A", "B", "C"]), _enum(["A", "B"])) == []
    assert any("MISSING_ENUM_SYMBOLS" in m for m in can_read(_enum(["A"]), _enum(["A", "B"])))
    assert can_read(_enum(["A", "X"], default="X"), _enum(["A", "B"])) == []


def test_unions_resolve_branch_by_branch():
    """Every writer branch needs a reader branch; a plain writer needs one matching reader branch."""
    assert can_read(["null", "long"], ["null", "int"]) == []
    assert can_read(["null", "string"], "string") == []
    assert can_read("string", ["null", "string"])
    assert any("MISSING_UNION_BRANCH" in m for m in can_read(["null", "int"], "string"))


def test_fixed_arrays_and_maps():
    """Fixed sizes must agree; arrays and maps compare their items and values."""
    fixed = {"type": "fixed", "name": "Hash", "size": 16}
    assert can_read(fixed, fixed) == []
    assert any("FIXED_SIZE_MISMATCH" in m for m in can_read({**fixed, "size": 32}, fixed))
    assert can_read({"type": "array", "items": "long"}, {"type": "array", "items": "int"}) == []
    assert can_read({"type": "map", "values": "int"}, {"type": "map", "values": "string"})
    assert can_read({"type": "map", "values": "int"}, {"type": "array", "items": "int"})


def test_named_references_and_recursive_types_resolve():
    """Named types referenced later (in the schema or in references) and self-references are followed."""
    node = _record([{"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Event"], "default": None}])
    wider = _record([{"name": "value", "type": "long"}, {"name": "next", "type": ["null", "Event"]}])
    assert can_read(wider, node) == []
    user = _record([{"name": "id", "type": "int"}], name="User")
    holder = _record([{"name": "user", "type": "org.openedx.User"}], name="Holder")
    narrower_user = _record([{"name": "id", "type": "string"}], name="User")
    assert can_read(holder, holder, reader_named=[user], writer_named=[user]) == []
    assert can_read(holder, holder, reader_named=[narrower_user], writer_named=[user])


def test_malformed_schema_raises_value_error():
    """A schema missing a required attribute is reported as ValueError rather than a verdict."""
    with pytest.raises(ValueError, match="malformed"):
        can_read({"type": "array"}, {"type": "array", "items": "int"})
