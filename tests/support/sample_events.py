"""Sample event data for any openedx-events signal, built by walking the attrs classes of ``init_data``.

Each variant stresses a different part of the encoding: ``optional_none`` leaves every ``default=None``
attribute unset, the others set all of them, with unicode and long strings, edge-case integers
(varint byte boundaries, the 64-bit limits), special floats, and empty or large lists and maps.
"""
from __future__ import annotations

import io
import itertools
import math
import types
import uuid
from datetime import UTC, datetime
from typing import Any, BinaryIO, Union, get_args, get_origin

from ccx_keys.locator import CCXLocator  # type: ignore[import-untyped]
from opaque_keys.edx.keys import CourseKey, UsageKey
from opaque_keys.edx.locator import (
    LibraryCollectionLocator,
    LibraryContainerLocator,
    LibraryLocatorV2,
    LibraryUsageLocatorV2,
)

VARIANTS = ("optional_none", "all_set", "unicode", "empty", "extremes")

_STRINGS: dict[str, list[Any]] = {
    "optional_none": ["text"],
    "all_set": ["Demonstration value", "audit", "https://example.com/a?b=c"],
    "unicode": ["Ünïcødé ✓ 学习 🎓", "naïve café", "x" * 70 + "é"],
    "empty": [""],
    "extremes": ["y" * 1500, "\x00 nul, \t tab, \n newline", "🎓" * 300],
}
_INTS: dict[str, list[Any]] = {
    "optional_none": [1],
    "all_set": [42, 7, 1000],
    "unicode": [-1, 63, 64],
    "empty": [0],
    "extremes": [2**63 - 1, -(2**63), -64, -65, 1023, 1024, 8191, 8192],
}
_FLOATS: dict[str, list[Any]] = {
    "optional_none": [0.5],
    "all_set": [87.5, 0.1],
    "unicode": [-1.25],
    "empty": [0.0],
    "extremes": [math.nan, math.copysign(math.nan, -1), math.inf, -math.inf, -0.0, 1e308, 5e-324, 3],
}
_DATETIMES: dict[str, list[Any]] = {
    "optional_none": [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)],
    "all_set": [datetime(2026, 11, 28, 12, 0, 1, 123456, tzinfo=UTC)],
    "unicode": [datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)],
    "empty": [datetime(1970, 1, 1, tzinfo=UTC)],
    "extremes": [datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)],
}
_UNICODE_KEYS = {"unicode", "extremes"}
# Key strings per class: (ordinary, unicode or otherwise unusual).
_KEYS: dict[type, tuple[str, str]] = {  # most specific classes first
    CCXLocator: ("ccx-v1:edX+DemoX+Demo_Course+ccx@1", "ccx-v1:édX+Démo+2026+ccx@42"),
    LibraryUsageLocatorV2: ("lb:MyOrg:my-lib:problem:p1", "lb:Org-2:lib_2:html:intro"),
    LibraryLocatorV2: ("lib:MyOrg:my-lib", "lib:Org-2:lib_2"),
    LibraryCollectionLocator: ("lib-collection:MyOrg:my-lib:coll1", "lib-collection:Org-2:lib_2:c-2"),
    LibraryContainerLocator: ("lct:MyOrg:my-lib:unit:u1", "lct:Org-2:lib_2:section:s-2"),
    CourseKey: ("course-v1:edX+DemoX+Demo_Course", "édX/Démo_X/2026"),  # the second is a deprecated-style key
    UsageKey: (
        "block-v1:edX+DemoX+Demo_Course+type@problem+block@abc123",
        "lb:MyOrg:my-lib:problem:p1",  # a library usage key held in a UsageKey field
    ),
}
_COLLECTION_SIZES = {"optional_none": 0, "all_set": 2, "unicode": 3, "empty": 0, "extremes": 100}
_MAP_KEYS = ["zeta", "alpha", "Mid", "ключ", "clé", "a b", ""]


class _Builder:
    """Makes values for one variant, cycling through that variant's examples field by field."""

    def __init__(self, variant: str):
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
        self.variant = variant
        self.counter = itertools.count()
        self.depth = 0

    def pick(self, examples: dict[str, list[Any]]) -> Any:
        options = examples[self.variant]
        return options[next(self.counter) % len(options)]

    def value(self, declared: Any) -> Any:  # noqa: PLR0911 -- one return per kind of declared type
        origin, args = get_origin(declared), get_args(declared)
        if origin is Union or origin is types.UnionType:  # Optional[X]: None only in the optional_none variant
            present = [arg for arg in args if arg is not type(None)]
            return None if self.variant == "optional_none" or not present else self.value(present[0])
        if declared is BinaryIO:
            return io.BytesIO(self.pick(_STRINGS).encode())
        if origin is list or declared is list:
            item = args[0] if args else str
            return [self.value(item) for _ in range(_COLLECTION_SIZES[self.variant])]
        if origin is dict or declared is dict:
            item = args[1] if args else str
            size = _COLLECTION_SIZES[self.variant]
            keys = _MAP_KEYS if self.variant in _UNICODE_KEYS else [key for key in _MAP_KEYS if key.isascii()]
            names = [keys[index % len(keys)] + (str(index) if index >= len(keys) else "") for index in range(size)]
            return {name: self.value(item) for name in reversed(names)}  # unsorted on purpose
        if hasattr(declared, "__attrs_attrs__"):
            return self.instance(declared)
        if declared is bool:
            return next(self.counter) % 2 == 0
        simple = {str: _STRINGS, int: _INTS, float: _FLOATS, datetime: _DATETIMES}.get(declared)
        if simple is not None:
            return self.pick(simple)
        if declared is uuid.UUID:
            return uuid.UUID(int=(next(self.counter) * 0x9E3779B97F4A7C15) % (1 << 128))
        for key_class, (ordinary, unusual) in _KEYS.items():
            if isinstance(declared, type) and issubclass(declared, key_class):
                key_type: Any = declared
                return key_type.from_string(unusual if self.variant in _UNICODE_KEYS else ordinary)
        raise TypeError(f"no sample values for {declared!r}")

    def instance(self, cls: type) -> Any:
        if self.depth > 10:
            raise TypeError(f"{cls.__name__} nests too deeply for samples")
        self.depth += 1
        try:
            kwargs = {}
            for attribute in cls.__attrs_attrs__:  # type: ignore[attr-defined]
                if not attribute.init:
                    continue
                optional = attribute.default is None
                value = None if optional and self.variant == "optional_none" else self.value(attribute.type)
                kwargs[attribute.alias or attribute.name] = value
            return cls(**kwargs)
        finally:
            self.depth -= 1


def sample_event_data(signal: Any, variant: str = "all_set") -> dict[str, Any]:
    """The ``send_event`` kwargs of one sample event of ``signal`` in the given variant."""
    builder = _Builder(variant)
    return {name: builder.value(declared) for name, declared in signal.init_data.items()}


def sample_events(signal: Any) -> dict[str, dict[str, Any]]:
    """One sample event of ``signal`` per variant, keyed by variant name."""
    return {variant: sample_event_data(signal, variant) for variant in VARIANTS}
