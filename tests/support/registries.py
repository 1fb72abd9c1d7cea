"""Which schema registry the registry-path integration tests run against, and how to compare what it holds.

``pytest --schema-registry=standin|apicurio`` (or ``EVENT_BUS_TEST_SCHEMA_REGISTRY``) chooses; the
default is our stand-in, which needs no Java. The ``schema_registry`` fixture of ``tests/conftest.py``
gives a fresh stand-in per test, or the session's one Apicurio Registry, so tests keep apart by
their own topic prefixes and look only at their own subjects (``subjects(prefix)``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Protocol

REGISTRY_KINDS = ("standin", "apicurio")
REGISTRY_ENV = "EVENT_BUS_TEST_SCHEMA_REGISTRY"


class RegistryUnderTest(Protocol):
    """What the registry-path tests use of either registry."""

    keeps_schema_text: bool

    @property
    def url(self) -> str:
        """The Confluent-compatible base URL."""
        ...

    def subjects(self, prefix: str = "") -> dict[str, list[str]]:
        """Live subjects starting with ``prefix`` and their schema texts, oldest version first."""
        ...


def selected_registry_kind() -> str:
    """``$EVENT_BUS_TEST_SCHEMA_REGISTRY`` or ``standin``; an unknown value is an error naming it."""
    kind = os.environ.get(REGISTRY_ENV) or "standin"
    if kind not in REGISTRY_KINDS:
        raise ValueError(f"{REGISTRY_ENV}={kind!r} is not a test schema registry; "
                         f"choose one of {', '.join(REGISTRY_KINDS)}")
    return kind


def comparable(registry: RegistryUnderTest, subjects: Mapping[str, list[str]]) -> dict[str, list[Any]]:
    """``subjects`` in the form ``registry`` can be compared in.

    The exact texts on a registry that keeps them (the stand-in, where equality proves a client sent
    exactly the producer's text). On one that canonicalises them (Apicurio, like Confluent's), parsed
    JSON, where equality proves the same schema, docs, defaults and custom properties included; there
    a primitive written as an object with no attribute a primitive has (the producer's key schema is
    the key's field declaration, ``{"name": "course_key", "type": "string"}``) is its bare name, as
    Avro's parser and so the registry make it (``"string"``).
    """
    if registry.keeps_schema_text:
        return {subject: list(texts) for subject, texts in subjects.items()}
    return {subject: [_primitive_as_name(json.loads(text)) for text in texts] for subject, texts in subjects.items()}


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# Attributes Avro defines for named, complex or field declarations: on a primitive they mean nothing.
_NOT_PRIMITIVE_ATTRIBUTES = frozenset({"name", "namespace", "aliases", "doc", "fields", "items", "values",
                                       "symbols", "size", "default", "order"})


def _primitive_as_name(schema: Any) -> Any:
    if not (isinstance(schema, dict) and schema.get("type") in _PRIMITIVES):
        return schema
    kept = {key: value for key, value in schema.items() if key not in _NOT_PRIMITIVE_ATTRIBUTES}
    return kept["type"] if list(kept) == ["type"] else kept
