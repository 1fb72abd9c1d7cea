"""Audit lines show a message key as text, decoded from its Avro record; anything else as its bytes."""
from __future__ import annotations

from edx_event_bus_kafka.internal.runtime.audit import ReadableKey


def avro_string(text: str) -> bytes:
    data = text.encode("utf-8")
    length, out = len(data) << 1, bytearray()  # zig-zag of a non-negative length
    while True:
        if length < 0x80:
            out.append(length)
            break
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    return bytes(out) + data


def test_a_registry_framed_key_of_one_string_field_reads_as_that_string():
    key = b"\x00\x00\x00\x00\x07" + avro_string("course-v1:edX+DemoX+Demo_Course")
    assert str(ReadableKey(key)) == "course-v1:edX+DemoX+Demo_Course"


def test_a_long_and_a_multi_field_key_are_decoded_too():
    long_text = "k" * 300  # a two-byte length
    assert str(ReadableKey(b"\x00\x00\x00\x00\x01" + avro_string(long_text))) == long_text
    assert str(ReadableKey(b"\x00\x00\x00\x00\x01" + avro_string("a") + avro_string("b"))) == "a,b"


def test_keys_that_are_not_registry_framed_avro_strings_show_their_bytes():
    assert str(ReadableKey(None)) == "None"
    assert str(ReadableKey(b"plain-key")) == "b'plain-key'"
    truncated = b"\x00\x00\x00\x00\x01" + avro_string("course")[:-2]
    assert str(ReadableKey(truncated)) == repr(truncated)
    assert str(ReadableKey(b"\x00\x00\x00\x00\x01\x04\xff\xfe")) == repr(b"\x00\x00\x00\x00\x01\x04\xff\xfe")


def test_a_single_object_encoded_key_without_a_registry_reads_as_its_string():
    key = b"\xc3\x01\xc7\x03EcrH\x01\x8f" + avro_string("course-v1:edX+DemoX+Demo_Course")
    assert str(ReadableKey(key)) == "course-v1:edX+DemoX+Demo_Course"
