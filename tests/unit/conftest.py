"""Fixtures of the unit tier: the event bus on the in-memory Kafka, and a recording receiver."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from edx_event_bus_kafka.testing.memory import InMemoryKafka
from tests.events import ENROLLMENT_SIGNAL
from tests.support.memory_bus import QUICK_SETTINGS, Receiver


@pytest.fixture
def bus(memory_kafka: InMemoryKafka, settings) -> InMemoryKafka:
    """The event bus on an in-memory Kafka, with short poll timeouts and backoffs."""
    for name, value in QUICK_SETTINGS.items():
        setattr(settings, name, value)
    return memory_kafka


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver of the enrollment signal for this test (see ``Receiver``)."""
    recording = Receiver()

    def enrollment_receiver(sender=None, signal=None, **kwargs):
        recording(sender, signal, **kwargs)

    ENROLLMENT_SIGNAL.connect(enrollment_receiver, weak=False)
    try:
        yield recording
    finally:
        ENROLLMENT_SIGNAL.disconnect(enrollment_receiver)
