"""Chaos soak: kills, a broker restart, a registry outage, and nothing is lost (``make soak``).

Events go through both delivery paths while three workers are killed and restarted; it is not part of
the test run.

Usage (from the repository root, with our venv and Kafka's jars: ``make kafka-jars``)::

    python scripts/soak.py [--events 100000] [--keys 1000] [--kill-every 4] [--json FILE]

Set-up: one Apache Kafka broker (which keeps its data across a restart), a six-partition topic, a
throw-away PostgreSQL for the outbox, the schema registry stand-in. Half the events are sent with
``on_commit`` (inside transactions of ten), half through the ``outbox`` (rows written in
transactions of ten, published by a ``relay_outbox``); event ``n`` has user id ``n`` and key course
``K(n % keys)``, the two halves on separate keys. Three ``consume_events`` workers share the topic;
their receiver fails every event whose user id is a multiple of 100 (1%), which is dead-lettered
after its retries, and notes every other one it processes.

Chaos while it runs: every ``--kill-every`` seconds a random worker is killed with -9 and started
again; once the broker is restarted; once the registry is stopped (SIGSTOP) for 10 s, which a
freshly started worker meets when it first fetches a schema.

At the end every sent event must have been processed, or be in the group's dead-letter topic, per-key
order must hold for the processed events (first processing of each, in user-id order), and the
duplicates are counted. One summary line, e.g.
``soak: 100000 sent, 99000 processed, 1000 dead-lettered, 0 lost, 412 duplicates, 3 m 10 s``.
Exits 1 if anything was lost or out of order.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import reporter  # noqa: E402
from benchmarks.producer_consumer import RegistryProcess  # noqa: E402
from edx_event_bus_kafka.testing import ApacheKafkaBroker, wait_for  # noqa: E402
from tests.support.postgres import TemporaryPostgres  # noqa: E402

say = reporter("soak")
PARTITIONS = 6
FAIL_EVERY = 100
WORKER_SETTINGS = {
    "EVENT_BUS_KAFKA_CONSUMER_CONFIG": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                                        "fetch.wait.max.ms": 100},
    "EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS": 2,
    "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_SEC": 0.05,
    "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_MAX_SEC": 2.0,
    "EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED": False,
}


# -- producer processes (python scripts/soak.py produce ...) -------------------------------------

def produce(args: argparse.Namespace) -> int:
    """Send events ``start .. start+count-1`` in transactions of ten; note each committed event's id."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.db import transaction
    from openedx_events.data import EventsMetadata

    from edx_event_bus_kafka import create_producer
    from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data

    producer = create_producer()
    assert producer is not None
    with open(args.sent_log, "a", encoding="utf-8") as sent:
        for first in range(args.start, args.start + args.count, 10):
            batch = []
            with transaction.atomic():
                for number in range(first, min(first + 10, args.start + args.count)):
                    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
                    key = args.key_offset + number % args.keys
                    data = enrollment_event_data(number, course=f"course-v1:edX+K{key}+2026")
                    producer.send(signal=ENROLLMENT_SIGNAL, topic=args.topic, event_key_field=ENROLLMENT_KEY_FIELD,
                                  event_data=data, event_metadata=metadata)
                    batch.append(f"{number} {metadata.id}\n")
            sent.writelines(batch)  # committed: these events must arrive
            sent.flush()
    failed = producer.close(timeout=120)
    return 1 if failed or producer.stats.snapshot()["failed"] else 0


# -- the run ---------------------------------------------------------------------------------------

class Soak:
    """The brokers, databases and processes of one soak run."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.topic = f"soak-{uuid.uuid4().hex[:6]}"
        self.group = f"soak-group-{uuid.uuid4().hex[:6]}"
        self.broker = ApacheKafkaBroker()
        self.registry = RegistryProcess()
        self.postgres = TemporaryPostgres()
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.relay: subprocess.Popen[bytes] | None = None
        self.events_log: list[str] = []
        self.kills = 0

    def env(self, **extra: Any) -> dict[str, str]:
        """The environment of one of the run's Django processes, with extra settings."""
        settings = {**WORKER_SETTINGS, "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": self.registry.url}
        settings.update(extra)
        return {**os.environ, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
                "TEST_POSTGRES_PORT": str(self.postgres.port), "TEST_POSTGRES_DB": "soak",
                "EVENT_BUS_SETTINGS_JSON": json.dumps(settings), "PYTHONUNBUFFERED": "1",
                "TEST_ARRIVAL_LOG": str(self.workdir / "arrivals.txt"), "TEST_ARRIVAL_FAIL_EVERY": str(FAIL_EVERY)}

    def start(self) -> None:
        """Start the broker, registry and database; migrate; create the topic."""
        self.broker.start()
        self.registry.start()
        self.postgres.start()
        self.postgres.create_database("soak")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO_ROOT, env=self.env(),
                       check=True)
        self.broker.create_topics([self.topic], partitions=PARTITIONS)
        say(f"Apache Kafka {self.broker.bootstrap_servers}, registry {self.registry.url}, "
            f"PostgreSQL :{self.postgres.port}, topic {self.topic}")

    def start_worker(self, number: int) -> None:
        """Start (or start again) consume_events worker ``number``."""
        output = open(self.workdir / f"worker-{number}.out", "ab")
        self.workers[number] = subprocess.Popen(
            [sys.executable, "manage.py", "consume_events", "-t", self.topic, "-g", self.group], cwd=REPO_ROOT,
            env=self.env(), stdout=output, stderr=subprocess.STDOUT)

    def start_relay(self) -> None:
        """Start the outbox relay."""
        output = open(self.workdir / "relay.out", "ab")
        self.relay = subprocess.Popen([sys.executable, "manage.py", "relay_outbox"], cwd=REPO_ROOT,
                                      env=self.env(EVENT_BUS_KAFKA_DELIVERY_MODE="outbox",
                                                   EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC=0.2),
                                      stdout=output, stderr=subprocess.STDOUT)

    def producers(self) -> list[subprocess.Popen[bytes]]:
        """Start the two producer processes: on_commit and outbox, on separate keys."""
        half = self.args.events // 2
        started = []
        for mode, start, count in (("on_commit", 0, half), ("outbox", half, self.args.events - half)):
            settings = {"EVENT_BUS_KAFKA_DELIVERY_MODE": mode, "EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT": True}
            # Separate keys for the two halves: two independent producers keep no order between them.
            key_offset = 0 if mode == "on_commit" else self.args.keys
            output = open(self.workdir / f"producer-{mode}.out", "ab")
            started.append(subprocess.Popen(
                [sys.executable, str(Path(__file__)), "produce", "--topic", self.topic, "--start", str(start),
                 "--count", str(count), "--keys", str(self.args.keys), "--key-offset", str(key_offset),
                 "--sent-log", str(self.workdir / f"sent-{mode}.txt")],
                cwd=REPO_ROOT, env=self.env(**settings), stdout=output, stderr=subprocess.STDOUT))
        return started

    def chaos_round(self, rounds: int) -> None:
        """Kill a random worker and start it again; on round 3 restart the broker, on round 5 stop the registry.

        Runs in the main thread: Linux ties a child's die-with-parent signal to the thread that
        started it, so a broker restarted from a short-lived thread would die with that thread.
        """
        number = random.choice(list(self.workers))
        self.workers[number].send_signal(signal.SIGKILL)
        self.workers[number].wait(10)
        self.kills += 1
        self.start_worker(number)
        self.events_log.append(f"killed worker {number}")
        if rounds == 3:
            say("restarting the broker")
            self.broker.restart()
            self.events_log.append("broker restarted")
        if rounds == 5:
            say("registry unreachable for 10 s")
            assert self.registry.process is not None
            self.registry.process.send_signal(signal.SIGSTOP)
            time.sleep(10)  # the outage's length, not synchronisation
            self.registry.process.send_signal(signal.SIGCONT)
            self.events_log.append("registry outage 10 s")

    def stop(self) -> None:
        """Stop every process (SIGTERM, then a kill), the registry, the broker and the database."""
        for process in [*self.workers.values(), *([self.relay] if self.relay else [])]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers.values(), *([self.relay] if self.relay else [])]:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        self.registry.stop()
        self.broker.close()
        self.postgres.stop()


def sent_events(workdir: Path) -> dict[str, int]:
    """Event id -> number, of every event whose transaction committed."""
    sent: dict[str, int] = {}
    for path in workdir.glob("sent-*.txt"):
        for line in path.read_text(encoding="utf-8").splitlines():
            number, event_id = line.split()
            sent[event_id] = int(number)
    return sent


def arrivals(workdir: Path) -> list[tuple[str, float, int]]:
    path = workdir / "arrivals.txt"
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3:
            found.append((parts[0], float(parts[1]), int(parts[2])))
    return found


def dead_lettered(soak: Soak) -> set[str]:
    """The event ids in the group's dead-letter topic, read from the beginning of every partition.

    A freshly made client may not know the topic's partitions yet (a moment after the broker's
    restart, say): the read is tried again for a while before it gives up.
    """
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + 60
    while True:
        try:
            return _read_dead_letters(soak)
        except KafkaException as error:
            if time.monotonic() > deadline:
                raise
            say(f"reading the dead letters failed ({error}); trying again")
            time.sleep(1)  # pacing the retries of a read, not synchronisation


def _read_dead_letters(soak: Soak) -> set[str]:
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from edx_event_bus_kafka.internal.kafka.clients import CONFLUENT

    topic = f"{soak.topic}-{soak.group}-dead-letter"
    consumer = CONFLUENT.consumer({"bootstrap.servers": soak.broker.bootstrap_servers,
                                   "group.id": f"soak-reader-{uuid.uuid4()}", "enable.auto.commit": False,
                                   "log_level": 0})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return set()
        ends = {number: consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=10)[1]
                for number in metadata.partitions}
        consumer.assign([TopicPartition(topic, number, OFFSET_BEGINNING) for number in ends])
        found: set[str] = set()
        positions = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 30
        while any(positions[n] < end for n, end in ends.items()) and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    event_id = dict(message.headers() or [])["ce_id"]
                    found.add(event_id.decode() if isinstance(event_id, bytes) else str(event_id))
                    positions[int(message.partition() or 0)] = int(message.offset() or 0) + 1
        return found
    finally:
        consumer.close()


def run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        soak = Soak(args, workdir)
        try:
            soak.start()
            for number in range(3):
                soak.start_worker(number)
            soak.start_relay()
            producers = soak.producers()
            rounds = 0
            settle_by = time.monotonic() + args.settle_timeout
            while True:  # chaos until every producer is done and every event processed
                time.sleep(args.kill_every)  # the pace of the chaos, not synchronisation
                rounds += 1
                soak.chaos_round(rounds)
                if any(producer.poll() is None for producer in producers):
                    continue
                if rounds == 1 or any(producer.returncode for producer in producers):
                    say(f"producers finished with {[producer.returncode for producer in producers]}")
                sent = sent_events(workdir)
                expected = {event_id for event_id, number in sent.items() if number % FAIL_EVERY}
                if expected <= {event_id for event_id, _, _ in arrivals(workdir)} and rounds >= 5:
                    break
                if time.monotonic() > settle_by:
                    say(f"not every event was processed within {args.settle_timeout} s")
                    break
            failing = {event_id for event_id, number in sent.items() if number % FAIL_EVERY == 0}
            try:
                wait_for(lambda: failing <= dead_lettered(soak), timeout=120, interval=2.0,
                         what="every failing event to be dead-lettered")
            except TimeoutError as error:
                say(f"{error}; see the worker logs in {workdir}")  # the report counts what is missing
            letters = dead_lettered(soak)
        finally:
            soak.stop()
        seen = arrivals(workdir)
        return report(args, sent, seen, letters=letters, soak=soak, took=time.monotonic() - began)
    finally:
        if args.keep:
            say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def report(args: argparse.Namespace, sent: dict[str, int], seen: list[tuple[str, float, int]], *,
           letters: set[str], soak: Soak, took: float) -> int:
    """Print the summary line (and the JSON); the exit status: 1 if anything was lost or out of order."""
    counts: dict[str, int] = defaultdict(int)
    for event_id, _, _ in seen:
        counts[event_id] += 1
    processed = set(counts)
    lost = [event_id for event_id in sent if event_id not in processed and event_id not in letters]
    duplicates = sum(count - 1 for count in counts.values())
    firsts: dict[int, list[int]] = defaultdict(list)
    already: set[str] = set()
    for event_id, _, number in sorted(seen, key=lambda arrival: arrival[1]):
        if event_id not in already:
            already.add(event_id)
            firsts[number % args.keys + (args.keys if number >= args.events // 2 else 0)].append(number)
    disorder = sum(1 for numbers in firsts.values() if numbers != sorted(numbers))
    minutes, seconds = divmod(int(took), 60)
    print(f"soak: {len(sent)} sent, {len(processed)} processed, {len(letters)} dead-lettered, {len(lost)} lost, "
          f"{duplicates} duplicates, {disorder} keys out of order, {soak.kills} workers killed, "
          f"{minutes} m {seconds:02d} s")
    if args.json:
        args.json.write_text(json.dumps({"sent": len(sent), "processed": len(processed), "dead_lettered": len(letters),
                                         "lost": lost[:100], "duplicates": duplicates, "keys_out_of_order": disorder,
                                         "kills": soak.kills, "events": soak.events_log, "seconds": took}, indent=2),
                             encoding="utf-8")
    return 1 if lost or disorder or len(sent) < args.events else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    runner = commands.add_parser("run", help="the soak (the default)")
    for target in (parser, runner):
        target.add_argument("--events", type=int, default=100_000)
        target.add_argument("--keys", type=int, default=1000)
        target.add_argument("--kill-every", type=float, default=4.0, help="seconds between worker kills (4)")
        target.add_argument("--settle-timeout", type=float, default=1800.0)
        target.add_argument("--json", type=Path)
        target.add_argument("--keep", action="store_true", help="keep the work folder (logs) for inspection")
    producer = commands.add_parser("produce", help="(internal) one producer process")
    for name in ("--topic", "--sent-log"):
        producer.add_argument(name, required=True)
    for name in ("--start", "--count", "--keys", "--key-offset"):
        producer.add_argument(name, type=int, required=True)
    args = parser.parse_args()
    return produce(args) if args.command == "produce" else run(args)


if __name__ == "__main__":
    sys.exit(main())
