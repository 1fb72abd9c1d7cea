"""The generated Avro writers give openedx-events' bytes, and raise FallBack instead of guessing."""
from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import attr
import pytest
from opaque_keys.edx.keys import CourseKey
from openedx_events.event_bus.avro.serializer import AvroSignalSerializer, serialize_event_data_to_bytes
from openedx_events.learning.signals import (
    COURSE_ENROLLMENT_CHANGED,
    LTI_PROVIDER_LAUNCH_SUCCESS,
    PERSISTENT_GRADE_SUMMARY_CHANGED,
    XBLOCK_SKILL_VERIFIED,
)

from edx_event_bus_kafka.internal.wire.fast.writer import FallBack, compile_event_writer, compile_key_writer
from edx_event_bus_kafka.internal.wire.records import to_avro_record
from edx_event_bus_kafka.internal.wire.serialization import key_schema
from tests.events import ENROLLMENT_KEY_FIELD, enrollment_event_data
from tests.support.sample_events import VARIANTS, sample_event_data
from tests.support.signals import (
    ALL_SIGNALS,
    SERIALIZABLE,
    StandInSignal,
    schema_or_none,
    signal_id,
    uses_only_fast_path_avro,
)

# Serializable signals of the installed openedx-events that get a generated writer; the others are
# encoded by the fallback path, which tests/unit/test_codec_paths.py checks for every signal.
WRITABLE = [signal for signal in SERIALIZABLE if compile_event_writer(signal) is not None]


@pytest.mark.parametrize("signal", ALL_SIGNALS, ids=signal_id)
def test_writer_is_compiled_exactly_for_serializable_schemas_within_the_supported_avro(signal):
    """A signal gets a writer iff openedx-events builds its schema and the schema uses only supported Avro."""
    schema = schema_or_none(signal)
    supported = schema is not None and uses_only_fast_path_avro(schema)
    assert (compile_event_writer(signal) is not None) == supported


def test_enrollment_changed_gets_a_writer():
    """COURSE_ENROLLMENT_CHANGED, the hot event, compiles to a fast writer."""
    assert compile_event_writer(COURSE_ENROLLMENT_CHANGED) is not None


@pytest.mark.parametrize(
    ("signal", "variant"), [(signal, variant) for signal in WRITABLE for variant in VARIANTS], ids=signal_id
)
def test_writer_bytes_equal_the_reference_serializer(signal, variant):
    """For every signal with a writer and every sample variant, the writer writes openedx-events' exact bytes."""
    writer = compile_event_writer(signal)
    assert writer is not None
    data = sample_event_data(signal, variant)
    assert writer(data) == serialize_event_data_to_bytes(data, signal)


def _enrollment(**changes: Any) -> dict[str, Any]:
    """Enrollment event data with dotted attribute paths replaced, e.g. ``{"user.id": 5}``."""
    data = enrollment_event_data()
    for path, value in changes.items():
        data["enrollment"] = _replace(data["enrollment"], path.split("__"), value)
    return data


def _replace(obj: Any, names: list[str], value: Any) -> Any:
    if len(names) == 1:
        return attr.evolve(obj, **{names[0]: value})
    return attr.evolve(obj, **{names[0]: _replace(getattr(obj, names[0]), names[1:], value)})


def _write_enrollment(data: dict[str, Any]) -> bytes:
    writer = compile_event_writer(COURSE_ENROLLMENT_CHANGED)
    assert writer is not None
    return writer(data)


def test_named_record_reference_is_written_like_the_definition():
    """created_by refers to the UserData record by name; set, it is written as a full UserData record."""
    creator = _enrollment().get("enrollment").user
    data = _enrollment(created_by=attr.evolve(creator, id=99))
    assert '"UserData"' in AvroSignalSerializer(COURSE_ENROLLMENT_CHANGED).schema_string()
    assert _write_enrollment(data) == serialize_event_data_to_bytes(data, COURSE_ENROLLMENT_CHANGED)


@pytest.mark.parametrize(
    "changes",
    [
        {"user": {"id": 1, "is_active": True, "pii": {"username": "u", "email": "e", "name": "n"}}},
        {"user__id": True},
        {"user__id": 2**63},
        {"user__id": -(2**63) - 1},
        {"user__id": 1.0},
        {"mode": None},
        {"course__course_key": None},
        {"course__course_key": "course-v1:edX+DemoX+Demo_Course"},
        {"creation_date": "2026-11-28T12:00:01+00:00"},
        {"mode": "lone surrogate \ud800"},
        {"mode": 5},
        {"is_active": 1},
    ],
    ids=repr,
)
def test_surprising_values_raise_fallback(changes):
    """Dicts for attrs objects, bad longs, non-nullable None, serializer-typed str, bad text raise only FallBack."""
    with pytest.raises(FallBack):
        _write_enrollment(_enrollment(**changes))


@pytest.mark.parametrize(
    "data",
    [{}, {"enrollment": None}, {**enrollment_event_data(), "extra": 1}, [("enrollment", None)]],
    ids=["missing key", "None event", "extra key", "not a dict"],
)
def test_wrong_event_data_shape_raises_fallback(data):
    """Missing, extra or None top-level values, or data that is not a dict, raise FallBack."""
    with pytest.raises(FallBack):
        _write_enrollment(data)


def test_long_limits_are_written_and_beyond_them_fall_back():
    """The 64-bit extremes encode as openedx-events encodes them; one past either end raises FallBack."""
    for number in (2**63 - 1, -(2**63), -65, -64, 63, 64, 1023, 1024):
        data = _enrollment(user__id=number)
        assert _write_enrollment(data) == serialize_event_data_to_bytes(data, COURSE_ENROLLMENT_CHANGED)
    for number in (2**63, -(2**63) - 1):
        with pytest.raises(FallBack):
            _write_enrollment(_enrollment(user__id=number))


def test_str_subclasses_are_written_as_their_text():
    """A str subclass (like a str enum) is written as its plain text, as the JSON round trip leaves it."""

    class Mode(str):
        def __str__(self) -> str:
            return "not used by JSON"

    data = _enrollment(mode=Mode("verified"), user__pii__username=Mode("ünï"))
    assert _write_enrollment(data) == serialize_event_data_to_bytes(data, COURSE_ENROLLMENT_CHANGED)


@pytest.mark.parametrize("value", [math.nan, math.copysign(math.nan, -1), math.inf, -0.0, 5e-324, 3, 2**60 + 1])
def test_doubles_match_the_json_round_trip(value):
    """Doubles, including any NaN (JSON makes it the canonical NaN), -0.0 and ints, give the reference bytes."""
    base = sample_event_data(PERSISTENT_GRADE_SUMMARY_CHANGED)
    data = {"grade": attr.evolve(base["grade"], percent_grade=value)}
    writer = compile_event_writer(PERSISTENT_GRADE_SUMMARY_CHANGED)
    assert writer is not None
    assert writer(data) == serialize_event_data_to_bytes(data, PERSISTENT_GRADE_SUMMARY_CHANGED)


def test_maps_are_written_in_sorted_key_order():
    """Map entries come out sorted by key, as openedx-events' JSON round trip (sort_keys) leaves them."""
    base = sample_event_data(LTI_PROVIDER_LAUNCH_SUCCESS)
    params = attr.evolve(base["launch_data"].launch_params, extra_params={"z": "1", "a": "2", "é": "3", "M": ""})
    data = {"launch_data": attr.evolve(base["launch_data"], launch_params=params)}
    writer = compile_event_writer(LTI_PROVIDER_LAUNCH_SUCCESS)
    assert writer is not None
    assert writer(data) == serialize_event_data_to_bytes(data, LTI_PROVIDER_LAUNCH_SUCCESS)


@pytest.mark.parametrize(
    ("signal", "attribute", "value"),
    [
        (LTI_PROVIDER_LAUNCH_SUCCESS, "extra_params", {1: "x"}),
        (LTI_PROVIDER_LAUNCH_SUCCESS, "extra_params", {"a": 1}),
        (XBLOCK_SKILL_VERIFIED, "verified_skills", {1, 2}),
        (XBLOCK_SKILL_VERIFIED, "verified_skills", [1, True]),
        (XBLOCK_SKILL_VERIFIED, "verified_skills", "12"),
    ],
    ids=["int map key", "int map value", "set for array", "bool array item", "str for array"],
)
def test_unexpected_collections_raise_fallback(signal, attribute, value):
    """Non-str map keys or values, sets, strings or bools where an array of longs is expected raise FallBack."""
    [(name, top)] = sample_event_data(signal).items()
    holder, path = (top.launch_params, "launch_params") if signal is LTI_PROVIDER_LAUNCH_SUCCESS else (top, None)
    changed = attr.evolve(holder, **{attribute: value})
    data = {name: attr.evolve(top, **{path: changed}) if path else changed}
    writer = compile_event_writer(signal)
    assert writer is not None
    with pytest.raises(FallBack):
        writer(data)


def test_tuples_are_written_as_arrays():
    """A tuple where a list is declared is written like the list (attrs.asdict turns it into one)."""
    [(name, top)] = sample_event_data(XBLOCK_SKILL_VERIFIED, "extremes").items()
    data = {name: attr.evolve(top, verified_skills=tuple(top.verified_skills))}
    writer = compile_event_writer(XBLOCK_SKILL_VERIFIED)
    assert writer is not None
    assert writer(data) == serialize_event_data_to_bytes(data, XBLOCK_SKILL_VERIFIED)


ODD_VALUES = [None, True, 0, -1, 2**70, 1.5, "text", b"bytes", [], {}, (), object(), datetime(2020, 1, 1, tzinfo=UTC)]
ENROLLMENT_PATHS = [
    "user", "user__id", "user__is_active", "user__pii", "user__pii__username", "user__pii__name", "course",
    "course__course_key", "course__display_name", "course__start", "mode", "is_active", "creation_date", "created_by",
]  # fmt: skip


@pytest.mark.parametrize("path", ENROLLMENT_PATHS)
def test_any_value_anywhere_gives_reference_bytes_or_fallback(path):
    """Whatever value is put in any field, the writer returns the reference bytes or raises FallBack."""
    for value in [*ODD_VALUES, CourseKey.from_string("course-v1:a+b+c")]:
        data = _enrollment(**{path: value})
        try:
            written = _write_enrollment(data)
        except FallBack:
            continue
        assert written == serialize_event_data_to_bytes(data, COURSE_ENROLLMENT_CHANGED), (path, value)


@attr.s(frozen=True)
class _Blob:
    content = attr.ib(type=bytes)


@attr.s(frozen=True)
class _Ratio:
    ratio = attr.ib(type=float)
    weights = attr.ib(type=dict[str, float])


def test_schemas_outside_the_supported_avro_compile_to_none():
    """A bytes field (or any type the writer does not generate) makes compile return None: the slow path encodes."""
    assert compile_event_writer(StandInSignal("org.test.blob.v1", blob=_Blob)) is None
    assert compile_event_writer(StandInSignal("org.test.ratio.v1", ratio=_Ratio)) is not None


@pytest.mark.parametrize(
    "key", ["course-v1:edX+DemoX+Demo_Course", "ccx-v1:édX+Démo+2026+ccx@42", "edX/DemoX/Demo_Course"]
)
def test_key_writer_matches_the_key_schema_encoding(key):
    """Course keys (plain, CCX, unicode, deprecated) are written exactly as the key schema encodes them."""
    schema = key_schema(COURSE_ENROLLMENT_CHANGED, ENROLLMENT_KEY_FIELD)
    course_key = CourseKey.from_string(key)
    for given in (schema.schema, schema.text, "string"):
        writer = compile_key_writer(given)
        assert writer is not None
        assert writer(course_key) == schema.write(to_avro_record(course_key))
        assert writer(key) == schema.write(key)


def test_key_writer_only_covers_string_keys_and_falls_back_on_odd_keys():
    """Long, record or nullable key schemas compile to None; None or int keys raise FallBack."""
    assert compile_key_writer(key_schema(COURSE_ENROLLMENT_CHANGED, "enrollment.user.id").schema) is None
    enrollment_fields = AvroSignalSerializer(COURSE_ENROLLMENT_CHANGED).schema["fields"][0]["type"]["fields"]
    user, created_by = enrollment_fields[0], enrollment_fields[-1]
    assert (user["name"], created_by["name"]) == ("user", "created_by")
    assert compile_key_writer(user) is None
    assert compile_key_writer(created_by) is None
    assert compile_key_writer('{"type": "string", "logicalType": "uuid"}') is None
    writer = compile_key_writer("string")
    assert writer is not None
    for key in (None, 5, b"x"):
        with pytest.raises(FallBack):
            writer(key)
