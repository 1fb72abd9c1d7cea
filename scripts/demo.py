"""``make demo``: the whole event bus on a laptop, no Docker.

1. Starts the embedded Kafka-protocol broker.
2. Starts a worker process: ``./manage.py consume_events -t learning-course-enrollment -g demo-worker``.
3. Sends three COURSE_ENROLLMENT_CHANGED events with ``send_event()``; openedx-events hands them to
   our producer through ``EVENT_BUS_PRODUCER_CONFIG`` (see tests/settings.py).
4. Waits until the worker's receiver got all three, prints what it received, stops the worker with
   SIGTERM and checks it exited 0.

Exits non-zero if any step fails.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from edx_event_bus_kafka.testing import FAST_CONSUMER_CONFIG, EmbeddedKafkaBroker  # noqa: E402

TOPIC = "learning-course-enrollment"
PREFIX = "demo"
EVENTS = 3


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def start_worker(broker: EmbeddedKafkaBroker, received: Path, output: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "EVENT_BUS_TOPIC_PREFIX": PREFIX,
        "EVENT_BUS_SETTINGS_JSON": json.dumps({"EVENT_BUS_KAFKA_CONSUMER_CONFIG": FAST_CONSUMER_CONFIG}),
        "TEST_RECEIVER_LOG": str(received),  # tests/receivers.py writes what the receiver gets here
    }
    with open(output, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "manage.py", "consume_events", "-t", TOPIC, "-g", "demo-worker"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )


def wait_for_lines(path: Path, count: int, worker: subprocess.Popen[bytes], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        entries = [json.loads(line) for line in lines]
        done = [entry for entry in entries if entry["phase"] == "done"]
        if len(done) >= count:
            return done
        if worker.poll() is not None:
            break
        time.sleep(0.05)
    return []


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="event-bus-demo-"))
    with EmbeddedKafkaBroker() as broker:
        say(f"embedded broker ready on {broker.bootstrap_servers} in {broker.startup_seconds:.2f} s")
        broker.create_topics([f"{PREFIX}-{TOPIC}"], partitions=3)
        os.environ["EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        os.environ["EVENT_BUS_TOPIC_PREFIX"] = PREFIX

        import django

        django.setup()
        from edx_event_bus_kafka import create_producer
        from tests.events import ENROLLMENT_SIGNAL, enrollment_event_data

        received, output = workdir / "received.jsonl", workdir / "worker.log"
        worker = start_worker(broker, received, output)
        say(f"worker started: manage.py consume_events -t {TOPIC} -g demo-worker (pid {worker.pid})")

        for number in range(1, EVENTS + 1):
            ENROLLMENT_SIGNAL.send_event(**enrollment_event_data(number, course=f"course-v1:edX+Demo{number}+2026"))
        producer = create_producer()
        assert producer is not None
        undelivered = producer.prepare_for_shutdown(10)
        stats = producer.stats.snapshot()
        say(f"published {stats['delivered']} events to topic {PREFIX}-{TOPIC} "
            f"(failed: {stats['failed']}, undelivered: {undelivered})")

        started = time.monotonic()
        done = wait_for_lines(received, EVENTS, worker, timeout=60)
        for entry in done:
            user = entry["data"]["enrollment"]["user"]["pii"]["username"]
            course = entry["data"]["enrollment"]["course"]["course_key"]
            say(f"worker's receiver got {entry['metadata']['event_type']} id={entry['id']} user={user} course={course}")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=40)
        from edx_event_bus_kafka.internal.produce.producer import forget_producer

        del producer
        forget_producer(timeout=1)  # before the broker stops, so its client does not log the broker gone
        say(f"worker stopped on SIGTERM with exit status {code}")
        if len(done) != EVENTS or code != 0:
            say(f"FAILED: expected {EVENTS} events and exit status 0; worker log:\n{output.read_text()}")
            return 1
        say(f"all {EVENTS} events went producer -> Kafka -> consume_events -> receiver "
            f"in {time.monotonic() - started:.2f} s after publishing")
    say("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
