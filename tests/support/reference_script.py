"""Drive the reference ``edx-event-bus-kafka`` 6.x from its own venv, for interoperability tests.

Run with the reference venv's python in isolated mode (``python -I``) so nothing from this
repository (same import name!) can shadow it. Imports nothing from our code.

    produce --bootstrap B --registry R --topic T --count N [--metadata-json FILE]
        send N COURSE_ENROLLMENT_CHANGED events with the reference producer; prints one JSON line
        per event: {"number", "metadata"}.
    consume --bootstrap B --registry R --topic T --group G --count N --out FILE
        run the reference consumer until N events reached its receiver; writes one JSON line per
        event to FILE: {"metadata", "data"} as the receiver saw them.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

EVENT_TYPE = "org.openedx.learning.course.enrollment.changed.v1"
KEY_FIELD = "enrollment.course.course_key"


def configure(bootstrap: str, registry: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="reference-interop", USE_TZ=True,
        INSTALLED_APPS=["edx_event_bus_kafka", "openedx_events"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        EVENTS_SERVICE_NAME="reference-service",
        EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL=registry,
        EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT=0.2,
        OPENEDX_TELEMETRY=[],
    )
    django.setup()


def enrollment(number: int) -> dict[str, Any]:
    """The same sample data as tests/events.py builds (course varies so keys spread)."""
    from opaque_keys.edx.keys import CourseKey
    from openedx_events.learning.data import CourseData, CourseEnrollmentData, UserData, UserPersonalData

    user = UserData(id=number, is_active=True, pii=UserPersonalData(
        username=f"learner{number}", email=f"learner{number}@example.com", name=f"Learner {number}"))
    return {"enrollment": CourseEnrollmentData(
        user=user,
        course=CourseData(course_key=CourseKey.from_string(f"course-v1:edX+C{number}+2026"),
                          display_name="Demonstration Course"),
        mode="audit", is_active=True,
        creation_date=datetime(2026, 11, 28, 12, 0, number % 60, tzinfo=UTC), created_by=None,
    )}


def record_of(value: Any) -> Any:
    """Event data as plain JSON (attrs -> dicts, keys and datetimes -> strings), for comparison."""
    import attr

    if attr.has(type(value)):
        return {a.name: record_of(getattr(value, a.name)) for a in attr.fields(type(value))}
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def produce(args: argparse.Namespace) -> int:
    from openedx_events.data import EventsMetadata
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

    from edx_event_bus_kafka import create_producer

    given = json.load(open(args.metadata_json, encoding="utf-8")) if args.metadata_json else []
    producer = create_producer()
    for number in range(args.count):
        if number < len(given):
            fields = dict(given[number])
            fields["time"] = datetime.fromisoformat(fields["time"])
            fields["sourcelib"] = tuple(fields["sourcelib"])
            from uuid import UUID

            fields["id"] = UUID(fields["id"])
            metadata = EventsMetadata(**fields)
        else:
            metadata = EventsMetadata(event_type=EVENT_TYPE)
        producer.send(signal=COURSE_ENROLLMENT_CHANGED, topic=args.topic, event_key_field=KEY_FIELD,
                      event_data=enrollment(number), event_metadata=metadata)
        print(json.dumps({"number": number, "metadata": json.loads(metadata.to_json())}), flush=True)
    producer.prepare_for_shutdown()
    return 0


def consume(args: argparse.Namespace) -> int:
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

    import edx_event_bus_kafka.internal.consumer as reference_consumer
    from edx_event_bus_kafka import KafkaEventConsumer

    # The embedded test broker makes a group join wait session.timeout.ms / 2 (22 s by default);
    # the reference has no setting for consumer options, so the test adds the short timeouts here.
    common_settings = reference_consumer.load_common_settings

    def with_short_session() -> dict:
        return {**common_settings(), "session.timeout.ms": 2000, "heartbeat.interval.ms": 500,
                "fetch.wait.max.ms": 10, "auto.offset.reset": "earliest"}

    reference_consumer.load_common_settings = with_short_session
    consumer = KafkaEventConsumer(args.topic, args.group)
    received = 0

    def receiver(sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
        nonlocal received
        metadata = kwargs.pop("metadata")
        kwargs.pop("from_event_bus", None)
        with open(args.out, "a", encoding="utf-8") as out:
            out.write(json.dumps({"metadata": json.loads(metadata.to_json()),
                                  "data": record_of(kwargs["enrollment"])}) + "\n")
        received += 1
        if received >= args.count:
            consumer._shut_down()  # the reference's own way to leave its loop

    COURSE_ENROLLMENT_CHANGED.connect(receiver)
    consumer.consume_indefinitely()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["produce", "consume"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default="reference-group")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--out")
    parser.add_argument("--metadata-json")
    args = parser.parse_args()
    configure(args.bootstrap, args.registry)
    return produce(args) if args.action == "produce" else consume(args)


if __name__ == "__main__":
    sys.exit(main())
