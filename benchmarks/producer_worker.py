"""One benchmark round in one process, run by ``benchmarks/producer_consumer.py`` inside either virtualenv.

It runs with our venv's python (our ``edx_event_bus_kafka``) or with ``.venv-reference-pyXY``'s (the
reference 6.x, same import name), so it imports nothing from this repository: it configures
Django itself and builds its own event data. Start it with ``python -I`` so that neither the
current directory nor PYTHONPATH can put our package in front of the reference.

Workload: ``COURSE_ENROLLMENT_CHANGED.send_event(enrollment=...)`` through openedx-events' own
``EVENT_BUS_PRODUCER_CONFIG`` handler, schema registry configured, INFO logging with audit lines
to a file. After an untimed warm-up (schema registration, connections), it times ``--events``
sends plus the flush that waits for every delivery report, and counts the audit lines
("Message delivered to Kafka event bus") written for them. Prints one JSON line with the results.

With ``--baseline`` the same sends go to a producer that does nothing: what openedx-events itself
costs (metadata, signal dispatch, its own INFO log line per event), which no event bus can avoid.

With ``--fill TOPIC`` (repeatable) nothing is timed: it fills the topics for the consumer benchmark.
``--events`` events, each with its own course (so keys spread over partitions), go with the same
metadata to every fill topic through ``producer.send`` (byte-identical messages), and it waits for
every delivery report. Prints one JSON line with the delivered and failed counts.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EVENT_TYPE = "org.openedx.learning.course.enrollment.changed.v1"
KEY_FIELD = "enrollment.course.course_key"
COURSE = "course-v1:edX+DemoX+Demo_Course"
VARIED_COURSE = "course-v1:edX+C{number}+2026"  # --fill: one course (hence one key) per event
DELIVERED_MARK = "Message delivered to Kafka event bus"
FAILED_MARK = "Error delivering message to Kafka event bus"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="name to report (ours / reference)")
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--schema-registry-url", required=True)
    parser.add_argument("--topic", help="a fresh topic for this round (required unless --fill)")
    parser.add_argument("--fill", action="append", dest="fill_topics", default=[], metavar="TOPIC",
                        help="fill this topic (repeatable) for the consumer benchmark instead of timing sends")
    parser.add_argument("--log-file", required=True, type=Path, help="where INFO logging (audit lines) goes")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the timed part here")
    parser.add_argument("--baseline", action="store_true",
                        help="send through a producer that does nothing, to measure openedx-events' own cost")
    parser.add_argument("--settle-timeout", type=float, default=10.0,
                        help="seconds to wait after the flush for audit lines still being written")
    args = parser.parse_args(argv)
    if not args.fill_topics and not args.topic:
        parser.error("--topic is required unless --fill is given")
    if args.fill_topics and args.baseline:
        parser.error("--fill sends through the Kafka producer: it cannot be combined with --baseline")
    return args


def configure_django(args: argparse.Namespace) -> None:
    """The same minimal service settings for ours and the reference, then ``django.setup()``."""
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmark-only",
        USE_TZ=True,
        INSTALLED_APPS=["edx_event_bus_kafka", "openedx_events"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        EVENTS_SERVICE_NAME="benchmark",
        EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS=args.bootstrap_servers,
        EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL=args.schema_registry_url,
        EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED=True,
        EVENT_BUS_PRODUCER=f"{__name__}.baseline_producer" if args.baseline else "edx_event_bus_kafka.create_producer",
        EVENT_BUS_PRODUCER_CONFIG=(
            {EVENT_TYPE: {args.topic: {"event_key_field": KEY_FIELD, "enabled": True}}} if args.topic else {}
        ),
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "file": {"class": "logging.FileHandler", "filename": str(args.log_file), "formatter": "plain"},
            },
            "root": {"handlers": ["file"], "level": "INFO"},
        },
    )
    django.setup()


def baseline_producer() -> Any:
    """``EVENT_BUS_PRODUCER`` for ``--baseline``: a producer that drops every event."""
    from openedx_events.event_bus import EventBusProducer

    class BaselineProducer(EventBusProducer):
        def send(self, **_kwargs: Any) -> None:
            """Drop the event."""

        def prepare_for_shutdown(self) -> None:
            """Nothing to flush."""

    return BaselineProducer()


def make_events(count: int, first: int, *, vary_course: bool = False) -> list[Any]:
    """``count`` distinct CourseEnrollmentData objects, built before timing starts.

    All in one course, or (``vary_course``) each in its own, so that their keys spread over partitions.
    """
    from opaque_keys.edx.keys import CourseKey
    from openedx_events.learning.data import CourseData, CourseEnrollmentData, UserData, UserPersonalData

    course = CourseData(course_key=CourseKey.from_string(COURSE), display_name="Demonstration Course")
    events = []
    for number in range(first, first + count):
        if vary_course:
            course = CourseData(course_key=CourseKey.from_string(VARIED_COURSE.format(number=number)),
                                display_name="Demonstration Course")
        user = UserData(
            id=number, is_active=True,
            pii=UserPersonalData(username=f"learner{number}", email=f"learner{number}@example.com",
                                 name=f"Learner {number}"),
        )
        events.append(CourseEnrollmentData(
            user=user, course=course, mode="audit", is_active=True,
            creation_date=datetime(2026, 11, 28, 12, 0, number % 60, tzinfo=UTC), created_by=None,
        ))
    return events


def count_marks(log_file: Path, start: int) -> tuple[int, int]:
    """Delivered and failed lines written to ``log_file`` after byte offset ``start``."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    with open(log_file, "rb") as log:
        log.seek(start)
        text = log.read().decode("utf-8", errors="replace")
    return text.count(DELIVERED_MARK), text.count(FAILED_MARK)


def wait_for_marks(log_file: Path, start: int, wanted: int, timeout: float) -> tuple[int, int]:
    """Count the marks, waiting a little for audit lines of callbacks still running on the poll thread."""
    deadline = time.monotonic() + timeout
    while True:
        delivered, failed = count_marks(log_file, start)
        if delivered + failed >= wanted or time.monotonic() >= deadline:
            return delivered, failed
        time.sleep(0.05)


def fill(args: argparse.Namespace) -> int:
    """``--fill``: the same ``--events`` events to every fill topic, each delivery report awaited."""
    from openedx_events.data import EventsMetadata
    from openedx_events.event_bus import get_producer
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

    import edx_event_bus_kafka

    producer = get_producer()
    if type(producer).__name__ != "KafkaEventProducer":
        raise SystemExit(f"openedx-events loaded {type(producer).__name__}, not the Kafka producer")
    events = make_events(args.events, first=1, vary_course=True)
    started = time.perf_counter()
    for enrollment in events:
        metadata = EventsMetadata(event_type=EVENT_TYPE)
        for topic in args.fill_topics:
            producer.send(signal=COURSE_ENROLLMENT_CHANGED, topic=topic, event_key_field=KEY_FIELD,
                          event_data={"enrollment": enrollment}, event_metadata=metadata)
    producer.prepare_for_shutdown()
    wanted = args.events * len(args.fill_topics)
    delivered, failed = wait_for_marks(args.log_file, 0, wanted, args.settle_timeout)
    result = {
        "label": args.label,
        "version": edx_event_bus_kafka.__version__,
        "package_file": edx_event_bus_kafka.__file__,
        "topics": args.fill_topics,
        "events": args.events,
        "delivered": delivered,
        "failed": failed,
        "elapsed_s": time.perf_counter() - started,
    }
    print(json.dumps(result), flush=True)
    return 0 if delivered >= wanted else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_django(args)
    if args.fill_topics:
        return fill(args)

    from openedx_events.event_bus import get_producer
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

    import edx_event_bus_kafka

    producer = get_producer()  # the same cached instance openedx-events' handler sends through
    expected = "BaselineProducer" if args.baseline else "KafkaEventProducer"
    if type(producer).__name__ != expected:
        raise SystemExit(f"openedx-events loaded {type(producer).__name__}, not the Kafka producer")

    warmup_events = make_events(args.warmup, first=1_000_000)
    timed_events = make_events(args.events, first=1)

    for enrollment in warmup_events:
        COURSE_ENROLLMENT_CHANGED.send_event(enrollment=enrollment)
    producer.prepare_for_shutdown()
    wanted = 0 if args.baseline else args.warmup
    warm_delivered, warm_failed = wait_for_marks(args.log_file, 0, wanted, args.settle_timeout)
    start_offset = args.log_file.stat().st_size

    profiler = cProfile.Profile() if args.profile else None
    cpu_started = time.process_time()
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    for enrollment in timed_events:
        COURSE_ENROLLMENT_CHANGED.send_event(enrollment=enrollment)
    producer.prepare_for_shutdown()
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if profiler:
        profiler.dump_stats(str(args.profile))

    if args.baseline:
        delivered, failed = args.events, 0  # nothing to deliver: every event "arrived" at the no-op producer
    else:
        delivered, failed = wait_for_marks(args.log_file, start_offset, args.events, args.settle_timeout)
    result = {
        "label": args.label,
        "version": edx_event_bus_kafka.__version__,
        "package_file": edx_event_bus_kafka.__file__,
        "python": sys.executable,
        "topic": args.topic,
        "events": args.events,
        "warmup_delivered": warm_delivered,
        "warmup_failed": warm_failed,
        "delivered": delivered,
        "failed": failed,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "events_per_s": args.events / elapsed if elapsed > 0 else 0.0,
        "cpu_us_per_event": cpu / args.events * 1e6 if args.events else 0.0,
    }
    print(json.dumps(result), flush=True)
    return 0 if delivered >= args.events else 1


if __name__ == "__main__":
    sys.exit(main())
