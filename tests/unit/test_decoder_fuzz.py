"""Property-based fuzzing of what a consumer reads: header lists and value bytes.

Whatever a topic holds, the decoders either return an event or raise the documented
:class:`UnusableMessageError` (which dead-letters the message), never anything else; and an event
they return is what its bytes say: a mangled real message decodes to the original event or to the
event its mangled bytes encode (re-encoding gives them back), never to something else; random bytes
that decode give an event that encodes and decodes to itself. Bounded (a few hundred examples per
property) so that CI runs it on every build; run with ``--hypothesis-seed`` to replay a failure.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.errors import UnusableMessageError
from edx_event_bus_kafka.internal.wire.decode import decode_message
from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata, metadata_from_headers
from edx_event_bus_kafka.internal.wire.serialization import EventEncoder
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER_NAMES = ["ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "ce_minorversion", "sourcehost",
                "sourcelib", "content-type", "ce_datacontenttype", "other"]

_METADATA = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
VALID_HEADERS: list[tuple[str, bytes]] = [(name, bytes(value)) for name, value in headers_from_metadata(_METADATA)]
ENCODER = EventEncoder(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, "fuzz-topic")
_KEY, VALID_VALUE = ENCODER.encode(enrollment_event_data(3))

header_values = st.one_of(st.binary(max_size=40), st.sampled_from([value for _, value in VALID_HEADERS]), st.none())
header_lists = st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=14)


def message(value: bytes | None, headers: Any) -> Any:
    return SimpleNamespace(value=lambda: value, headers=lambda: headers, topic=lambda: "fuzz-topic",
                           partition=lambda: 0, offset=lambda: 7)


@FUZZ
@given(header_lists)
def test_any_header_list__metadata_or_the_documented_error(headers):
    """Arbitrary header lists (names, repeats, missing ones, any bytes, None) never raise anything else."""
    try:
        metadata = metadata_from_headers(headers)
    except UnusableMessageError:
        return
    assert isinstance(metadata, EventsMetadata)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(range(len(VALID_HEADERS))), header_values), max_size=4))
def test_mutated_valid_headers__metadata_or_the_documented_error(changes):
    """The headers of a real event with some values replaced by arbitrary bytes."""
    headers = list(VALID_HEADERS)
    for index, value in changes:
        headers[index] = (headers[index][0], value)
    try:
        metadata_from_headers(headers)
    except UnusableMessageError:
        pass


ORIGINAL = enrollment_event_data(3)


def decoded(value: bytes, headers: Any) -> dict[str, Any] | None:
    """The event data, or None for the documented error (whose context must name the message)."""
    try:
        _signal, event_data, _metadata = decode_message(message(value, headers), headers)
    except UnusableMessageError as error:
        assert error.topic == "fuzz-topic" and error.offset == 7  # the context is there for the dead letter
        return None
    return event_data


def assert_original_or_faithful(value: bytes, encoder: EventEncoder = ENCODER) -> None:
    """A mangled real value: the original event (e.g. ``T`` vs another ISO separator), or exactly its bytes."""
    event_data = decoded(value, VALID_HEADERS)
    if event_data is not None and event_data != ORIGINAL:
        assert encoder.encode(event_data)[1] == value, "decoded to an event its bytes do not encode"


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_value_bytes__the_documented_error_or_a_stable_event(value):
    """Random value bytes under valid headers: the documented error, or an event that encodes and decodes to itself."""
    event_data = decoded(value, VALID_HEADERS)
    if event_data is not None:
        assert decoded(ENCODER.encode(event_data)[1], VALID_HEADERS) == event_data


@FUZZ
@given(st.data())
def test_mutated_valid_value__the_original_event_or_the_documented_error(data):
    """A real value with bytes flipped, inserted, removed or appended: never a different event in disguise."""
    value = bytearray(VALID_VALUE)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        kind = data.draw(st.sampled_from(["flip", "insert", "delete", "append"]))
        position = data.draw(st.integers(min_value=0, max_value=len(value) - 1)) if value else 0
        if kind == "flip" and value:
            value[position] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif kind == "insert":
            value.insert(position, data.draw(st.integers(min_value=0, max_value=255)))
        elif kind == "delete" and value:
            del value[position]
        else:
            value += data.draw(st.binary(min_size=1, max_size=8))
    assert_original_or_faithful(bytes(value))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_registry_framed_value__the_original_event_or_the_documented_error(settings, data):
    """The same with the schema registry's framing (magic byte, schema id): never another event in disguise.

    The registry is confluent-kafka's in-process mock, shared by the examples.
    """
    settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = "mock://decoder-fuzz"
    encoder = EventEncoder(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, "fuzz-topic")
    _key, original = encoder.encode(enrollment_event_data(3))
    value = bytearray(original)
    position = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    value[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    if data.draw(st.booleans()):
        value += data.draw(st.binary(min_size=1, max_size=4))
    assert_original_or_faithful(bytes(value), encoder)


def test_bytes_after_the_record_make_the_value_unusable():
    """Found by the fuzzer: a whole record followed by more bytes is refused, not decoded while ignoring them."""
    assert decoded(VALID_VALUE, VALID_HEADERS) == ORIGINAL
    try:
        decode_message(message(VALID_VALUE + b"\x00", VALID_HEADERS), VALID_HEADERS)
    except UnusableMessageError as error:
        assert "1 bytes after the end of its" in str(error)
    else:
        raise AssertionError("a value with a trailing byte was decoded")
