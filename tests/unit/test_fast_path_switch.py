"""EVENT_BUS_KAFKA_AVRO_FAST_PATH=False turns the generated Avro code off; bytes and data stay the same."""
from __future__ import annotations

import pytest
from django.test import override_settings

from edx_event_bus_kafka.internal.wire import decode as decoding
from edx_event_bus_kafka.internal.wire.serialization import EventEncoder
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data


def _no_generated_reader(_signal):
    raise AssertionError("the generated reader was used with the fast path off")


def test_fast_path_off__same_bytes_same_data_and_no_generated_code(monkeypatch):
    """With the switch off, the encoder has no generated writers and decoding never asks for a reader."""
    data = enrollment_event_data(7)
    fast = EventEncoder(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, "switch-topic")
    assert fast._fast_value is not None and fast._fast_key is not None  # the default: generated code
    with override_settings(EVENT_BUS_KAFKA_AVRO_FAST_PATH=False):
        slow = EventEncoder(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, "switch-topic")
        assert slow._fast_value is None and slow._fast_key is None
        assert slow.encode(data) == fast.encode(data)
        monkeypatch.setattr(decoding, "compile_event_reader", _no_generated_reader)
        _key, value = slow.encode(data)
        assert decoding.decode_value(ENROLLMENT_SIGNAL, value) == data


@pytest.mark.parametrize("value", ["no", 0, None])
def test_fast_path_switch_must_be_a_boolean(value):
    """Anything but True or False is a configuration error naming the setting."""
    from edx_event_bus_kafka.internal.settings.declarations import settings_problems

    with override_settings(EVENT_BUS_KAFKA_AVRO_FAST_PATH=value):
        (problem,) = settings_problems()
    assert problem.startswith("EVENT_BUS_KAFKA_AVRO_FAST_PATH=")
