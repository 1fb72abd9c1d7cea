"""The generated Avro readers give openedx-events' event data, and raise FallBack instead of guessing."""
from __future__ import annotations

import io
import math
import random
from typing import Any

import attr
import fastavro
import pytest
from opaque_keys.edx.keys import CourseKey
from openedx_events.event_bus.avro.deserializer import AvroSignalDeserializer
from openedx_events.event_bus.avro.serializer import AvroSignalSerializer, serialize_event_data_to_bytes
from openedx_events.learning.signals import (
    COURSE_ENROLLMENT_CHANGED,
    LTI_PROVIDER_LAUNCH_SUCCESS,
    PERSISTENT_GRADE_SUMMARY_CHANGED,
    XBLOCK_SKILL_VERIFIED,
)

from edx_event_bus_kafka.internal.wire.fast import reader as avro_reader
from edx_event_bus_kafka.internal.wire.fast.reader import FallBack, compile_event_reader
from tests.events import enrollment_event_data
from tests.support.sample_events import VARIANTS, sample_event_data
from tests.support.signals import (
    ALL_SIGNALS,
    SERIALIZABLE,
    StandInSignal,
    assert_same_event_data,
    schema_or_none,
    signal_id,
    uses_only_fast_path_avro,
)

# Serializable signals of the installed openedx-events that get a generated reader; the others are
# decoded by the fallback path, which tests/unit/test_codec_paths.py checks for every signal.
READABLE = [signal for signal in SERIALIZABLE if compile_event_reader(signal) is not None]

def _reference(signal: Any, body: bytes) -> dict[str, Any]:
    """The slow path: fastavro to a dict, then openedx-events' from_dict."""
    parsed = fastavro.parse_schema(AvroSignalSerializer(signal).schema)
    return AvroSignalDeserializer(signal).from_dict(fastavro.schemaless_reader(io.BytesIO(body), parsed))


def _read(signal: Any, body: bytes) -> dict[str, Any]:
    reader = compile_event_reader(signal)
    assert reader is not None
    return reader(body)


def _patched(body: bytes, old: bytes, new: bytes) -> bytes:
    assert body.count(old) == 1, old
    return body.replace(old, new)


@pytest.mark.parametrize("signal", ALL_SIGNALS, ids=signal_id)
def test_reader_is_compiled_exactly_for_schemas_within_the_supported_avro(signal):
    """A signal gets a reader iff openedx-events derives its schema and the schema uses only supported Avro."""
    schema = schema_or_none(signal)
    supported = schema is not None and uses_only_fast_path_avro(schema)
    assert (compile_event_reader(signal) is not None) == supported


def test_enrollment_changed_gets_a_reader():
    """COURSE_ENROLLMENT_CHANGED, the hot event, compiles to a fast reader."""
    assert compile_event_reader(COURSE_ENROLLMENT_CHANGED) is not None


@pytest.mark.parametrize(
    ("signal", "variant"), [(signal, variant) for signal in READABLE for variant in VARIANTS], ids=signal_id
)
def test_reader_result_equals_the_reference_decoding(signal, variant):
    """For every signal with a reader and every sample variant, the reader returns what fastavro + from_dict give."""
    reader = compile_event_reader(signal)
    assert reader is not None
    body = serialize_event_data_to_bytes(sample_event_data(signal, variant), signal)
    assert_same_event_data(reader(body), _reference(signal, body))


@pytest.mark.parametrize(
    ("signal", "variant"),
    [(signal, variant) for signal in READABLE for variant in ("all_set", "unicode")]
    + [(COURSE_ENROLLMENT_CHANGED, "extremes")],
    ids=signal_id,
)
def test_every_truncation_raises_fallback(signal, variant):
    """A body cut at any byte offset raises FallBack, never another exception or a result."""
    body = serialize_event_data_to_bytes(sample_event_data(signal, variant), signal)
    reader = compile_event_reader(signal)
    assert reader is not None
    for cut in range(len(body)):
        with pytest.raises(FallBack):
            reader(body[:cut])


@pytest.mark.parametrize("signal", READABLE, ids=signal_id)
def test_trailing_bytes_raise_fallback(signal):
    """A body with bytes after the event (which fastavro would silently ignore) raises FallBack."""
    body = serialize_event_data_to_bytes(sample_event_data(signal), signal)
    for extra in (b"\x00", b"\x02", b"junk"):
        with pytest.raises(FallBack):
            _read(signal, body + extra)


ENROLLMENT_BODY = serialize_event_data_to_bytes(enrollment_event_data(), COURSE_ENROLLMENT_CHANGED)
# Layout: id varint, is_active, username ("learner1"), email, name, course key, display name, start and end
# union indexes, mode, is_active, creation date, created_by union index.
MALFORMED = {
    "11-byte varint": b"\x80" * 10 + b"\x02" + ENROLLMENT_BODY[1:],
    "varint beyond 64 bits": b"\xff" * 9 + b"\x02" + ENROLLMENT_BODY[1:],
    "varint running off the end": b"\xff\xff",
    "negative string length": _patched(ENROLLMENT_BODY, b"\x10learner1", b"\x11learner1"),
    "negative multi-byte string length": _patched(ENROLLMENT_BODY, b"\x10learner1", b"\x81\x01learner1"),
    "string length past the body": _patched(ENROLLMENT_BODY, b"\x10learner1", b"\xfe\x7flearner1"),
    "invalid UTF-8 byte": _patched(ENROLLMENT_BODY, b"\x10learner1", b"\x10\xffearner1"),
    "UTF-8 lone surrogate": _patched(ENROLLMENT_BODY, b"\x10learner1", b"\x10\xed\xa0\x80rner1"),
    "overlong UTF-8": _patched(ENROLLMENT_BODY, b"\x10learner1", b"\x10\xc0\xafarner1"),
    "union index 5": ENROLLMENT_BODY[:-1] + b"\x0a",
    "union index 2": ENROLLMENT_BODY[:-1] + b"\x04",
    "union index -1": ENROLLMENT_BODY[:-1] + b"\x01",
    "start union index 5": _patched(ENROLLMENT_BODY, b"Course\x00\x00", b"Course\x0a\x00"),
    "boolean byte 2": ENROLLMENT_BODY[:1] + b"\x02" + ENROLLMENT_BODY[2:],
    "invalid course key": _patched(ENROLLMENT_BODY, b"course-v1:edX+DemoX+Demo_Course", b"x" * 31),
    "invalid datetime": _patched(ENROLLMENT_BODY, b"2026-11-28T12:00:01+00:00", b"y" * 25),
    "trailing byte": ENROLLMENT_BODY + b"\x00",
    "empty body": b"",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bodies_raise_fallback(body):
    """Bad varints, string lengths, UTF-8, union indexes, booleans, keys, dates or extra bytes raise only FallBack."""
    with pytest.raises(FallBack):
        _read(COURSE_ENROLLMENT_CHANGED, body)


@pytest.mark.parametrize(
    ("name", "error"),
    [("invalid UTF-8 byte", UnicodeDecodeError), ("invalid course key", Exception), ("invalid datetime", ValueError)],
)
def test_reference_path_reports_what_the_reader_falls_back_on(name, error):
    """Where the reader falls back on bad text, the reference path raises the proper error."""
    with pytest.raises(error):
        _reference(COURSE_ENROLLMENT_CHANGED, MALFORMED[name])


@pytest.mark.parametrize("body", [None, "text", 5, [2, 1]], ids=repr)
def test_non_bytes_raise_fallback(body):
    """Anything but a bytes-like body raises FallBack."""
    with pytest.raises(FallBack):
        _read(COURSE_ENROLLMENT_CHANGED, body)


def test_bytearray_body_reads_like_bytes():
    """A bytearray holding the body gives the same event data as the bytes."""
    expected = _reference(COURSE_ENROLLMENT_CHANGED, ENROLLMENT_BODY)
    assert_same_event_data(_read(COURSE_ENROLLMENT_CHANGED, bytearray(ENROLLMENT_BODY)), expected)


@pytest.mark.parametrize("signal", READABLE, ids=signal_id)
def test_random_corruptions_give_the_reference_result_or_fallback(signal):
    """Bytes replaced, inserted or deleted at random: the reader raises FallBack or returns the reference result."""
    rng = random.Random(signal.event_type)
    body = serialize_event_data_to_bytes(sample_event_data(signal, "unicode"), signal)
    reader = compile_event_reader(signal)
    assert reader is not None
    for _ in range(150):
        position = rng.randrange(len(body) + 1)
        byte = bytes([rng.choice([0, 1, 2, 3, 0x7F, 0x80, 0xFF, rng.randrange(256)])])
        mutated = rng.choice(
            [
                body[:position] + byte + body[position + 1 :],
                body[:position] + byte + body[position:],
                body[:position] + body[position + 1 :],
            ]
        )
        try:
            result = reader(mutated)
        except FallBack:
            continue
        assert_same_event_data(result, _reference(signal, mutated))


def _enrollment_body(**changes: Any) -> bytes:
    data = enrollment_event_data()
    enrollment = data["enrollment"]
    for name, value in changes.items():
        holder, _, attribute = name.rpartition("__")
        if not holder:
            enrollment = attr.evolve(enrollment, **{attribute: value})
        elif holder == "user__pii":
            pii = attr.evolve(enrollment.user.pii, **{attribute: value})
            enrollment = attr.evolve(enrollment, user=attr.evolve(enrollment.user, pii=pii))
        else:
            inner = attr.evolve(getattr(enrollment, holder), **{attribute: value})
            enrollment = attr.evolve(enrollment, **{holder: inner})
    return serialize_event_data_to_bytes({"enrollment": enrollment}, COURSE_ENROLLMENT_CHANGED)


@pytest.mark.parametrize(
    "body",
    [
        _enrollment_body(course__display_name="", user__pii__name="", is_active=False, user__id=0, mode=""),
        _enrollment_body(created_by=enrollment_event_data(7)["enrollment"].user),
        # start present but empty: from_dict leaves the falsy "" out, so start stays None (and no date is parsed).
        _patched(ENROLLMENT_BODY, b"Course\x00\x00", b"Course\x02\x00\x00"),
        # Overlong varint (1 in two bytes), which fastavro reads like the short form.
        b"\x82\x00" + ENROLLMENT_BODY[1:],
    ],
    ids=["falsy values", "created_by set", "empty start", "overlong varint"],
)
def test_defaults_and_odd_but_valid_encodings_follow_the_reference(body):
    """Falsy values (kept without a default, replaced by it with one), named records and overlong varints match."""
    assert_same_event_data(_read(COURSE_ENROLLMENT_CHANGED, body), _reference(COURSE_ENROLLMENT_CHANGED, body))


def test_negative_block_counts_and_split_blocks_read_like_fastavro():
    """Array blocks with a negative count (followed by a byte size), or split in several blocks, match fastavro."""
    [(name, top)] = sample_event_data(XBLOCK_SKILL_VERIFIED, "optional_none").items()
    data = {name: attr.evolve(top, verified_skills=[7, 8], ignored_skills=[])}
    body = serialize_event_data_to_bytes(data, XBLOCK_SKILL_VERIFIED)
    for blocks in (b"\x03\x04\x0e\x10\x00", b"\x02\x0e\x02\x10\x00", b"\x01\x02\x0e\x01\x02\x10\x00"):
        changed = _patched(body, b"\x04\x0e\x10\x00", blocks)
        assert_same_event_data(_read(XBLOCK_SKILL_VERIFIED, changed), _reference(XBLOCK_SKILL_VERIFIED, changed))


def test_map_with_repeated_key_keeps_the_last_value_like_fastavro():
    """A map entry repeated on the wire keeps its first position and last value, as fastavro's dict does."""
    base = sample_event_data(LTI_PROVIDER_LAUNCH_SUCCESS)
    params = attr.evolve(base["launch_data"].launch_params, extra_params={"a": "1"})
    data = {"launch_data": attr.evolve(base["launch_data"], launch_params=params)}
    body = serialize_event_data_to_bytes(data, LTI_PROVIDER_LAUNCH_SUCCESS)
    changed = _patched(body, b"\x02\x02a\x021\x00", b"\x04\x02a\x021\x02a\x022\x00")
    result = _read(LTI_PROVIDER_LAUNCH_SUCCESS, changed)
    assert result["launch_data"].launch_params.extra_params == {"a": "2"}
    assert_same_event_data(result, _reference(LTI_PROVIDER_LAUNCH_SUCCESS, changed))


def test_array_count_beyond_the_body_raises_fallback():
    """A block count larger than the bytes left raises FallBack before reading any item."""
    [(name, top)] = sample_event_data(XBLOCK_SKILL_VERIFIED, "optional_none").items()
    body = serialize_event_data_to_bytes({name: attr.evolve(top, verified_skills=[7, 8])}, XBLOCK_SKILL_VERIFIED)
    with pytest.raises(FallBack):
        _read(XBLOCK_SKILL_VERIFIED, _patched(body, b"\x04\x0e\x10\x00", b"\xfe\xff\xff\x7f\x0e\x10\x00"))


@pytest.mark.parametrize("value", [math.nan, math.copysign(math.nan, -1), math.inf, -0.0, 0.0, 5e-324])
def test_doubles_read_bit_for_bit(value):
    """Doubles (NaN, -0.0 and 0.0, which from_dict treats as falsy, included) match the reference bit for bit."""
    base = sample_event_data(PERSISTENT_GRADE_SUMMARY_CHANGED)
    body = serialize_event_data_to_bytes(
        {"grade": attr.evolve(base["grade"], percent_grade=value)}, PERSISTENT_GRADE_SUMMARY_CHANGED
    )
    expected = _reference(PERSISTENT_GRADE_SUMMARY_CHANGED, body)
    assert_same_event_data(_read(PERSISTENT_GRADE_SUMMARY_CHANGED, body), expected)


def test_course_keys_are_parsed_once_per_text_and_failures_are_not_remembered():
    """Repeated course key texts give the same immutable key; an invalid key falls back every time."""
    first = _read(COURSE_ENROLLMENT_CHANGED, ENROLLMENT_BODY)["enrollment"].course.course_key
    second = _read(COURSE_ENROLLMENT_CHANGED, ENROLLMENT_BODY)["enrollment"].course.course_key
    assert first is second
    assert first == CourseKey.from_string("course-v1:edX+DemoX+Demo_Course")
    for _ in range(2):
        with pytest.raises(FallBack):
            _read(COURSE_ENROLLMENT_CHANGED, MALFORMED["invalid course key"])


def test_course_key_memo_stays_correct_when_full(monkeypatch):
    """When the memo is full it starts over, and keys still come out as the reference parses them."""
    monkeypatch.setattr(avro_reader, "_MEMO_SIZE", 2)
    for number in range(6):
        body = serialize_event_data_to_bytes(
            enrollment_event_data(course=f"course-v1:edX+Demo{number}+Run"), COURSE_ENROLLMENT_CHANGED
        )
        assert_same_event_data(_read(COURSE_ENROLLMENT_CHANGED, body), _reference(COURSE_ENROLLMENT_CHANGED, body))


@attr.s(frozen=True)
class _Ratio:
    ratio = attr.ib(type=float)
    weights = attr.ib(type=dict[str, float])


@attr.s(frozen=True)
class _Defaults:
    count = attr.ib(type=int, default=3)
    hidden = attr.ib(type=bool, default=True)
    tags = attr.ib(type=list[str], factory=list)
    ratio = attr.ib(type=_Ratio, default=None)


def test_plain_defaults_replace_falsy_values_and_top_level_values_are_kept():
    """0, False, [] and 0.0 give way to attribute defaults (as from_dict does) but stay as they are at the top level."""
    signal = StandInSignal("org.test.defaults.v1", defaults=_Defaults, count=int, ratio=_Ratio)
    ratio = _Ratio(ratio=0.0, weights={})
    data = {"defaults": _Defaults(count=0, hidden=False, tags=[], ratio=ratio), "count": 0, "ratio": ratio}
    body = serialize_event_data_to_bytes(data, signal)
    result = _read(signal, body)
    assert result == {"defaults": _Defaults(count=3, hidden=True, ratio=ratio), "count": 0, "ratio": ratio}
    assert_same_event_data(result, _reference(signal, body))


@attr.s(frozen=True)
class _Blob:
    content = attr.ib(type=bytes)


@attr.s(frozen=True)
class _SelfFactory:
    name = attr.ib(type=str, default=attr.Factory(lambda self: "x", takes_self=True))


@attr.s(frozen=True)
class _Private:
    _secret = attr.ib(type=str)


@attr.s(frozen=True)
class _NotInit:
    shown = attr.ib(type=str)
    hidden = attr.ib(type=str, init=False, default="")


@attr.s(frozen=True)
class _Empty:
    pass


@pytest.mark.parametrize("cls", [_Blob, _SelfFactory, _Private, _NotInit, _Empty], ids=lambda cls: cls.__name__)
def test_schemas_or_classes_outside_what_is_generated_compile_to_none(cls):
    """Bytes fields, self-taking factories, renamed or non-init attributes and empty records compile to None."""
    assert compile_event_reader(StandInSignal(f"org.test.{cls.__name__.lower()}.v1", value=cls)) is None
