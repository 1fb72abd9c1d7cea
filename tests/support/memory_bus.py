"""Running the event bus's consumer loop, relay and producer on the in-memory Kafka in unit tests."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import KafkaEventConsumer
from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import encoder_for, signal_schema
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data

#: Settings that keep consumer loops and relays quick on the in-memory Kafka.
QUICK_SETTINGS: dict[str, Any] = {
    "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": 0.05,
    "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_SEC": 0.01,
    "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_MAX_SEC": 0.05,
    "EVENT_BUS_KAFKA_CONSUMER_POLL_FAILURE_SLEEP": 0.01,
    "EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC": 0.02,
    # Tests wait for commits; the default cadence (100 messages or 1 s) made each wait about 1 s.
    "EVENT_BUS_KAFKA_CONSUMER_COMMIT_INTERVAL_SEC": 0.02,
}


def encoded_event(number: int = 1, **metadata: Any) -> tuple[bytes, bytes, list, EventsMetadata]:
    """Key, value and headers of enrollment event ``number`` as our producer encodes it (no registry)."""
    event_metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type, **metadata)
    key, value = encoder_for(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, "any").encode(enrollment_event_data(number))
    return key, value, headers_from_metadata(event_metadata), event_metadata


def without(headers: list, name: str) -> list:
    """``headers`` without any ``name`` header."""
    return [(key, value) for key, value in headers if key != name]


def unusable_messages() -> dict[str, tuple[bytes, bytes | None, list]]:
    """One raw message per kind of unusable input, with the reason the consumer must give."""
    key, value, headers, _ = encoded_event()
    fingerprint = signal_schema(ENROLLMENT_SIGNAL).fingerprint
    unknown_type = [(k, b"org.openedx.nothing.v1" if k == "ce_type" else v) for k, v in headers]
    return {
        "missing required header 'ce_id'": (key, value, without(headers, "ce_id")),
        "missing required header 'ce_type'": (key, value, without(headers, "ce_type")),
        "header 'ce_id' appears 2 times": (key, value, [*headers, ("ce_id", b"another-id")]),
        "unknown event type 'org.openedx.nothing.v1'": (key, value, unknown_type),
        "cannot be decoded": (key, b"\xc3\x01" + fingerprint + b"\xff\xff\xff", headers),
        "unknown schema fingerprint 0102030405060708": (key, b"\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08", headers),
        "message has no value": (key, None, headers),
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL is not set": (key, b"\x00\x00\x00\x00\x07" + value[10:], headers),
        "neither registry nor single-object Avro": (key, b'{"json": true}', headers),
        "header 'ce_time' has an invalid value": (key, value, [(k, b"yesterday" if k == "ce_time" else v)
                                                             for k, v in headers]),
    }


class Receiver:
    """A receiver of the enrollment signal that records each call and fails as told."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_first = 0  # fail the first N calls
        self.always_fail = False
        self.on_call: Callable[[dict[str, Any]], None] | None = None
        self._lock = threading.Lock()

    def __call__(self, sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
        with self._lock:
            self.calls.append(kwargs)
            number = len(self.calls)
        if self.on_call is not None:
            self.on_call(kwargs)
        if self.always_fail or number <= self.fail_first:
            raise RuntimeError(f"receiver failing on call {number}")

    @property
    def user_ids(self) -> list[int]:
        """The user id of each call's enrollment, in call order."""
        return [call["enrollment"].user.id for call in self.calls]


def run_until(consumer: KafkaEventConsumer, condition: Callable[[], Any], *, timeout: float = 10.0,
              what: str = "the condition") -> int:
    """Run ``consumer`` in a thread until ``condition()`` holds, then stop it; its exit status."""
    result: list[int] = []
    met: list[bool] = []

    def done() -> bool:
        if condition():
            met.append(True)
        return bool(met or result)

    thread = threading.Thread(target=lambda: result.append(consumer.run()), name="test-consumer")
    thread.start()
    try:
        wait_for(done, timeout=timeout, what=what)
    finally:
        consumer.stop()
        thread.join(timeout)
    assert not thread.is_alive(), "the consumer did not stop"
    assert met, f"the consumer exited with {result} before {what}"
    return result[0]


def run_to_exit(consumer: KafkaEventConsumer, *, timeout: float = 10.0) -> int:
    """Run ``consumer`` until it exits by itself; its exit status."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(consumer.run()), name="test-consumer")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        consumer.stop()
        thread.join(timeout)
        raise AssertionError(f"the consumer was still running after {timeout} s")
    return result[0]
