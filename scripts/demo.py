"""``make demo``: send one real openedx-events event through an embedded Kafka broker and read it back.

Starts the embedded broker, publishes a COURSE_ENROLLMENT_CHANGED event as Avro with CloudEvents
headers, consumes it in a consumer group, decodes it and prints each step. Exits non-zero if the
event does not come back identical.
"""
from __future__ import annotations

import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from confluent_kafka import Consumer, Producer  # noqa: E402
from openedx_events.data import EventsMetadata  # noqa: E402
from openedx_events.event_bus.avro.deserializer import deserialize_bytes_to_event_data  # noqa: E402
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes  # noqa: E402

from edx_event_bus_kafka.testing import FAST_CONSUMER_CONFIG, EmbeddedKafkaBroker  # noqa: E402
from tests.events import ENROLLMENT_SIGNAL, enrollment_event_data  # noqa: E402


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def main() -> int:
    with EmbeddedKafkaBroker() as broker:
        say(f"embedded broker ready on {broker.bootstrap_servers} in {broker.startup_seconds:.2f} s")
        topic = "demo-learning-course-enrollment"
        broker.create_topics([topic], partitions=1)

        event_data = enrollment_event_data(7)
        metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "log_level": 0})
        producer.produce(
            topic,
            key=str(event_data["enrollment"].course.course_key).encode(),
            value=serialize_event_data_to_bytes(event_data, ENROLLMENT_SIGNAL),
            headers={"ce_type": metadata.event_type.encode(), "ce_id": str(metadata.id).encode()},
        )
        producer.flush(10)
        say(f"published {metadata.event_type} id={metadata.id} to topic {topic}")

        consumer = Consumer({
            "bootstrap.servers": broker.bootstrap_servers, "group.id": f"demo-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0, **FAST_CONSUMER_CONFIG,
        })
        consumer.subscribe([topic])
        started = time.monotonic()
        message = None
        while time.monotonic() - started < 30:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                break
        if message is None or message.error():
            say("FAILED: no event came back within 30 s")
            return 1
        consumer.commit(message=message, asynchronous=False)
        consumer.close()
        decoded = deserialize_bytes_to_event_data(message.value(), ENROLLMENT_SIGNAL)
        consumed_headers: list[tuple[str, bytes]] = list(message.headers() or [])  # type: ignore[arg-type]
        headers = {key: value.decode() for key, value in consumed_headers}
        say(f"consumed offset {message.offset()} after {time.monotonic() - started:.2f} s, "
            f"ce_id={headers['ce_id']}")
        if decoded != event_data:
            say(f"FAILED: decoded event differs: {decoded!r}")
            return 1
        enrollment = decoded["enrollment"]
        say(f"event data round-tripped intact: user={enrollment.user.pii.username} "
            f"course={enrollment.course.course_key} mode={enrollment.mode}")
    say("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
