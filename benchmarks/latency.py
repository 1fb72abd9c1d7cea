"""End-to-end latency at a steady rate: ``send`` in one process to the receiver of a ``consume_events`` worker.

Usage (from the repository root, with our venv)::

    python benchmarks/latency.py [--broker tansu|apache] [--rate 200] [--duration 10] [--json FILE]

One broker, one fresh topic of 3 partitions per variant, no schema registry (registry-less Avro,
so only the bus and the broker are measured). Two variants, measured in the same run:

* ``raw`` (the baseline): a bare confluent-kafka producer in this process (``linger.ms`` 5, our
  default) sends small values at ``--rate``; a bare confluent-kafka consumer in this process, with
  the same consumer options as our worker, notes each arrival. What librdkafka and the broker cost.
* ``ours``: our producer (``create_producer().send``, delivery mode ``immediate``) in this process
  sends COURSE_ENROLLMENT_CHANGED at ``--rate``; a real ``manage.py consume_events`` worker process
  decodes each and re-emits the signal, whose receiver (``tests.receivers.record_arrival``) writes
  the arrival time. Audit logging stays on (our default).

Latency = arrival time - the time just before the send, both ``time.time()`` on this machine. The
first second of each variant is warm-up and not counted. p50, p99 and max are reported with the
ratio ours / raw. This is a command, not a timed test: no threshold is asserted; it exits non-zero
only if events went missing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # for tests.*
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from benchmarks.common import (  # noqa: E402
    CONSUMER_OPTIONS,
    add_broker_argument,
    bench_broker,
    percentile,
    reporter,
)
from edx_event_bus_kafka.testing import KafkaTestBroker, wait_for  # noqa: E402

PARTITIONS = 3
WARMUP_SEC = 1.0
say = reporter("bench-latency")


def paced(rate: float, duration: float, send: Any) -> dict[str, float]:
    """Call ``send(number)`` ``rate`` times a second for ``duration`` s; returns send times by the id it returns."""
    sent: dict[str, float] = {}
    started = time.monotonic()
    total = int(rate * duration)
    for number in range(total):
        delay = started + number / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the load, not synchronisation
        at = time.time()
        sent[send(number)] = at
    return sent


def stats(sent: dict[str, float], arrived: dict[str, float], warmup_ids: set[str]) -> dict[str, Any]:
    latencies = [(arrived[i] - at) * 1000 for i, at in sent.items() if i in arrived and i not in warmup_ids]
    result: dict[str, Any] = {"sent": len(sent), "arrived": sum(1 for i in sent if i in arrived)}
    if latencies:
        result.update(p50_ms=percentile(latencies, 0.5), p99_ms=percentile(latencies, 0.99), max_ms=max(latencies),
                      counted=len(latencies))
    return result


def warmup_ids(sent: dict[str, float]) -> set[str]:
    first = min(sent.values())
    return {event_id for event_id, at in sent.items() if at - first < WARMUP_SEC}


def run_raw(broker: KafkaTestBroker, args: argparse.Namespace) -> dict[str, Any]:
    from edx_event_bus_kafka.internal.kafka.clients import CONFLUENT

    topic = f"latency-raw-{uuid.uuid4().hex[:6]}"
    broker.create_topics([topic], partitions=PARTITIONS)
    arrived: dict[str, float] = {}
    stop = threading.Event()
    assigned = threading.Event()
    consumer = CONFLUENT.consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": f"raw-{uuid.uuid4().hex}",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0,
                                   **CONSUMER_OPTIONS})
    consumer.subscribe([topic], on_assign=lambda *_: assigned.set())

    def consume() -> None:
        while not stop.is_set():
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                arrived[bytes(message.value() or b"").decode()] = time.time()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    wait_for(assigned.is_set, timeout=30, what="the raw consumer's assignment")
    producer = CONFLUENT.producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5, "log_level": 0})

    def send(number: int) -> str:
        event_id = str(uuid.uuid4())
        producer.produce(topic, key=str(number % 100), value=event_id.encode())
        producer.poll(0)
        return event_id

    sent = paced(args.rate, args.duration, send)
    producer.flush(10)
    try:
        wait_for(lambda: all(i in arrived for i in sent), timeout=30, interval=0.05, what="every raw message")
    except TimeoutError:
        pass  # reported as missing
    stop.set()
    thread.join(timeout=10)
    consumer.close()
    return stats(sent, arrived, warmup_ids(sent))


def run_ours(broker: KafkaTestBroker, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import django

    django.setup()
    from django.test import override_settings
    from openedx_events.data import EventsMetadata

    from edx_event_bus_kafka import create_producer
    from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data

    topic = f"latency-ours-{uuid.uuid4().hex[:6]}"
    broker.create_topics([topic], partitions=PARTITIONS)
    arrivals = workdir / "arrivals.txt"
    worker_settings = {"EVENT_BUS_KAFKA_CONSUMER_CONFIG": CONSUMER_OPTIONS,
                       "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": 0.25}
    env = {**os.environ, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "TEST_ARRIVAL_LOG": str(arrivals), "EVENT_BUS_SETTINGS_JSON": json.dumps(worker_settings)}
    output = open(workdir / "worker.out", "wb")
    worker = subprocess.Popen([sys.executable, "manage.py", "consume_events", "-t", topic, "-g",
                               f"latency-{uuid.uuid4().hex[:6]}"], cwd=REPO_ROOT, env=env, stdout=output,
                              stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"consuming partitions [0, 1, 2]" in (workdir / "worker.out").read_bytes(), timeout=60,
                 what="the worker's assignment")
        with override_settings(EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
                               EVENT_BUS_KAFKA_DELIVERY_MODE="immediate", EVENT_BUS_TOPIC_PREFIX=None):
            producer = create_producer()
            assert producer is not None

            def send(number: int) -> str:
                metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
                data = enrollment_event_data(number, course=f"course-v1:edX+L{number % 100}+2026")
                producer.send(signal=ENROLLMENT_SIGNAL, topic=topic, event_key_field=ENROLLMENT_KEY_FIELD,
                              event_data=data, event_metadata=metadata)
                return str(metadata.id)

            sent = paced(args.rate, args.duration, send)
            producer.prepare_for_shutdown(10)

        def arrived() -> dict[str, float]:
            if not arrivals.exists():
                return {}
            pairs = (line.split() for line in arrivals.read_text(encoding="utf-8").splitlines() if line.strip())
            return {fields[0]: float(fields[1]) for fields in pairs}

        try:
            wait_for(lambda: len(arrived()) >= len(sent), timeout=60, interval=0.1, what="every event at the receiver")
        except TimeoutError:
            pass  # reported as missing
        return stats(sent, arrived(), warmup_ids(sent))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        output.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_broker_argument(parser)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (200)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending per variant (10)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    broker = bench_broker(args.broker)
    try:
        broker.start()
        say(f"{args.broker} broker on {broker.bootstrap_servers}; {args.rate:.0f} events/s for {args.duration:.0f} s")
        results = {"raw": run_raw(broker, args)}
        with tempfile.TemporaryDirectory(prefix="bench-latency-") as workdir:
            results["ours"] = run_ours(broker, args, Path(workdir))
    finally:
        broker.close()
    print(f"\nEnd-to-end latency on {args.broker}, {args.rate:.0f} events/s for {args.duration:.0f} s "
          f"(first {WARMUP_SEC:.0f} s not counted)\n")
    print(f"{'variant':<8} {'sent':>6} {'arrived':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, r in results.items():
        numbers = (f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f}" if "p50_ms" in r
                   else f"{'-':>8} {'-':>8} {'-':>8}")
        print(f"{name:<8} {r['sent']:>6} {r['arrived']:>8} {numbers}")
    raw, ours = results["raw"], results["ours"]
    if "p50_ms" in raw and "p50_ms" in ours:
        print(f"ratio ours/raw: p50 {ours['p50_ms'] / raw['p50_ms']:.2f}x, p99 {ours['p99_ms'] / raw['p99_ms']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"broker": args.broker, "rate": args.rate, "duration": args.duration,
                                         "results": results}, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"broker": args.broker, "results": results}), flush=True)
    return 0 if all(r["arrived"] == r["sent"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
