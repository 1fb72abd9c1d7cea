"""Writer processes of ``benchmarks/outbox.py``: ``python -m benchmarks.outbox_worker write|latency ...``.

Runs from the repository root with Django on ``tests.settings``; the benchmark points it at its
PostgreSQL database (``TEST_POSTGRES_PORT`` / ``TEST_POSTGRES_DB``), at the embedded broker
(``EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS``) and sets the delivery mode and outbox options through
``EVENT_BUS_SETTINGS_JSON``. Every event is a COURSE_ENROLLMENT_CHANGED with its own course (so
keys spread over partitions), sent with ``producer.send`` like openedx-events' handler does.

``write --events N --per-transaction 10``: after an untimed warm-up, times N sends, ten per
``transaction.atomic()``. In ``outbox`` mode the warm-up transaction is rolled back (it leaves no
row); in ``on_commit`` mode the warm-up events go to the same topic and are flushed before timing.
Prints one JSON line: time and CPU time until the last commit returned and, in ``on_commit`` mode,
until the final flush had every delivery report.

``latency --rate R --duration D --out FILE``: commits one event per transaction, R per second for D
seconds, and writes ``{event id: time.time() right after the commit}`` to FILE. A few untimed
warm-up events go first and are waited for, so the publisher (flusher or relay) is connected
before the timed events. At the end it waits until the outbox has nothing pending (whoever
publishes it), then prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.db import transaction  # noqa: E402
from openedx_events.data import EventsMetadata  # noqa: E402

from edx_event_bus_kafka import create_producer  # noqa: E402
from edx_event_bus_kafka.internal.outbox.publisher import backlog  # noqa: E402
from edx_event_bus_kafka.internal.produce.producer import KafkaEventProducer  # noqa: E402
from edx_event_bus_kafka.internal.settings.declarations import get_settings  # noqa: E402
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data  # noqa: E402


class _RollBack(Exception):
    """Raised inside the warm-up transaction of outbox mode so that it leaves no row."""


def event_data(number: int) -> dict[str, Any]:
    """The kwargs of event ``number``: its own user and its own course (hence its own key)."""
    return enrollment_event_data(number, course=f"course-v1:edX+C{number}+2026")


def send(producer: KafkaEventProducer, topic: str, data: dict[str, Any]) -> EventsMetadata:
    """One ``send`` as openedx-events' handler does it; returns the metadata (its id is the ce_id)."""
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    producer.send(signal=ENROLLMENT_SIGNAL, topic=topic, event_key_field=ENROLLMENT_KEY_FIELD, event_data=data,
                  event_metadata=metadata)
    return metadata


def get_producer() -> KafkaEventProducer:
    producer = create_producer()
    if producer is None:
        raise SystemExit("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set")
    return producer


def wait_until_nothing_pending(timeout: float) -> int:
    """Poll the outbox until no row is pending; returns how many still are when giving up."""
    deadline = time.monotonic() + timeout
    while True:
        pending = int(backlog()["pending"])
        if pending == 0 or time.monotonic() >= deadline:
            return pending
        time.sleep(0.02)


def warm_up(producer: KafkaEventProducer, mode: str, topic: str, count: int) -> None:
    """Untimed: open the database connection, load encoders; on_commit also connects to the broker."""
    if count <= 0:
        return
    datas = [event_data(1_000_000 + number) for number in range(count)]
    if mode == "outbox":
        try:
            with transaction.atomic():
                for data in datas:
                    send(producer, topic, data)
                raise _RollBack
        except _RollBack:
            pass
        return
    with transaction.atomic():
        for data in datas:
            send(producer, topic, data)
    if producer.client.flush(30):
        raise SystemExit("warm-up events were not delivered within 30 s")


def write(args: argparse.Namespace) -> dict[str, Any]:
    mode = get_settings().delivery_mode
    producer = get_producer()
    warm_up(producer, mode, args.topic, args.warmup)
    before = producer.stats.snapshot()
    datas = [event_data(number) for number in range(args.events)]
    started, cpu_started = time.perf_counter(), time.process_time()
    for first in range(0, args.events, args.per_transaction):
        with transaction.atomic():
            for data in datas[first:first + args.per_transaction]:
                send(producer, args.topic, data)
    committed, cpu_committed = time.perf_counter(), time.process_time()
    undelivered = None
    if mode != "outbox":
        undelivered = producer.client.flush(60)
    finished, cpu_finished = time.perf_counter(), time.process_time()
    after = producer.stats.snapshot()
    producer.close(timeout=5)
    counts = {name: after[name] - before[name] for name in ("sent", "outboxed", "delivered", "failed")}
    commit_s = committed - started
    result: dict[str, Any] = {
        "mode": mode,
        "events": args.events,
        "per_transaction": args.per_transaction,
        "warmup": args.warmup,
        "commit_s": commit_s,
        "events_per_s": args.events / commit_s,
        "cpu_us_per_event": (cpu_committed - cpu_started) * 1e6 / args.events,
        "counts": counts,
    }
    if mode != "outbox":
        delivered_s = finished - started
        result.update({
            "delivered_s": delivered_s,
            "delivered_events_per_s": args.events / delivered_s,
            "delivered_cpu_us_per_event": (cpu_finished - cpu_started) * 1e6 / args.events,
            "undelivered_after_flush": undelivered,
        })
    return result


def latency(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    producer = get_producer()
    for number in range(args.warmup):
        with transaction.atomic():
            send(producer, args.topic, event_data(2_000_000 + number))
    warm_pending = wait_until_nothing_pending(args.drain_timeout)
    if warm_pending:
        raise SystemExit(f"{warm_pending} warm-up events still pending after {args.drain_timeout} s")
    count = round(args.rate * args.duration)
    datas = [event_data(number) for number in range(count)]
    committed: dict[str, float] = {}
    late = 0
    start = time.monotonic() + 0.05
    for number, data in enumerate(datas):
        delay = start + number / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late += 1
        with transaction.atomic():
            metadata = send(producer, args.topic, data)
        committed[str(metadata.id)] = time.time()
    writing_s = time.monotonic() - start
    pending = wait_until_nothing_pending(args.drain_timeout)
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(committed, out)
    stats = producer.stats.snapshot()
    producer.close(timeout=5)
    return {
        "publish_on_commit": settings.outbox_publish_on_commit,
        "outbox_poll_interval_sec": settings.outbox_poll_interval_sec,
        "events": count,
        "rate": args.rate,
        "writing_s": writing_s,
        "late_commits": late,
        "pending_at_end": pending,
        "outboxed": stats["outboxed"],
        "failed": stats["failed"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["write", "latency"])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, default=2000, help="write: timed events")
    parser.add_argument("--per-transaction", type=int, default=10, help="write: events per transaction")
    parser.add_argument("--warmup", type=int, default=10, help="untimed events sent first")
    parser.add_argument("--rate", type=float, default=20.0, help="latency: transactions (events) per second")
    parser.add_argument("--duration", type=float, default=10.0, help="latency: seconds of writing")
    parser.add_argument("--out", help="latency: where to write {event id: commit time}")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="latency: seconds to wait for the outbox to have nothing pending")
    args = parser.parse_args(argv)
    if args.action == "latency" and not args.out:
        parser.error("latency needs --out")
    return args


def main() -> int:
    args = parse_args()
    result = write(args) if args.action == "write" else latency(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
