"""Transactional outbox benchmark: write rate, relay rate, and latency from commit to consumer.

Usage (from the repository root, with our venv)::

    python benchmarks/outbox.py [--events 2000] [--rounds 3] [--json results.json] [--broker tansu|apache]

This is a command, not a timed test: numbers depend on the machine, so nothing is asserted
against a threshold. It exits non-zero only when a step did not do what it should (events
missing, a process failing). One broker (``--broker``: the embedded Tansu, the default, or Apache
Kafka with its full JIT) and one throw-away PostgreSQL server (migrated
once into a template database; every step gets a fresh copy of it) serve the whole run and are
torn down at the end. Processes run Django with ``tests.settings``; their settings come through
``EVENT_BUS_SETTINGS_JSON``. Every event is a COURSE_ENROLLMENT_CHANGED with its own course, on
fresh topics of 3 partitions. Everything else keeps its default, notably audit logging on (one
INFO line per event delivered by the producer), ``linger.ms`` 5, outbox batch size 200 and outbox
poll interval 1.0 s.

Phase 1, write rate (``--rounds`` rounds, medians reported). ``benchmarks/outbox_worker.py
write`` sends ``--events`` N events, 10 per ``transaction.atomic()``, once with
``EVENT_BUS_KAFKA_DELIVERY_MODE = "outbox"`` (``EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT =
False``, so nothing but the writes happen) and once with ``"on_commit"`` (direct to Kafka after
each commit), alternating which goes first. Timed from the first transaction until the last
commit returned, after an untimed warm-up. Events/s written = N / that time; the outbox run's
committed rows are then counted in the database (all N, all pending). For ``on_commit`` the time
until the final flush had every delivery report is also shown. The ratio outbox / on_commit (up
to the last commit) is what writing the outbox row costs the caller compared with handing the
event to librdkafka.

Phase 2, relay rate. ``manage.py relay_outbox`` is started on the outbox run's backlog of N rows.
The relay marks each batch with one ``published_at`` (the time of the mark), so the steady rate is
(rows after the first batch) / (last batch's mark - first batch's mark), which excludes process
start-up and connecting. Also shown: the rate from process launch to the last mark, and start-up
(launch to first mark). A psycopg poll every 10 ms of the pending count tells when the backlog is
empty (it must reach 0); the topic, read back, must hold exactly the N events (counted by
``ce_id``; it is read rather than counted from watermarks, which the embedded broker reports per
record batch). The ``on_commit`` topic is checked the same way in phase 1.

Phase 3, latency from commit to consumer. A consumer in this process (plain confluent-kafka,
``fast_consumer_config()``, new group, from the beginning of a fresh topic) is subscribed and
assigned before the writer starts; it notes ``time.time()`` when each message arrives, by its
``ce_id`` header. The writer commits one event per transaction at ``--rate`` per second for
``--duration`` seconds and notes ``time.time()`` right after each commit, by event id (same
machine, same clock). Latency = receive time - commit time. Two variants, each on its own fresh
database: ``publish_on_commit`` (PUBLISH_ON_COMMIT True, the flusher thread of the writing
process publishes; no relay runs) and ``relay`` (PUBLISH_ON_COMMIT False and one ``relay_outbox``
with the default EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC of 1.0 s, so latency is mostly the wait
for the relay's next pass). A few untimed warm-up events go first in both.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # for tests.support

from benchmarks.common import (  # noqa: E402
    CONSUMER_OPTIONS,
    add_broker_argument,
    bench_broker,
    child_env,
    percentile,
    reporter,
)
from edx_event_bus_kafka.testing import KafkaTestBroker  # noqa: E402
from tests.support.postgres import TemporaryPostgres  # noqa: E402

WORKER_MODULE = "benchmarks.outbox_worker"
TABLE = "edx_event_bus_kafka_outboxevent"
TEMPLATE_DB = "bench_outbox_template"
PARTITIONS = 3
WRITE_MODES = ("outbox", "on_commit")
DEFAULT_POLL_INTERVAL_SEC = 1.0  # EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC's default, used as is
# Set by tests.settings from the environment; the benchmark sets or clears each of them itself.
CLEARED_ENV = ("EVENT_BUS_SETTINGS_JSON", "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "EVENT_BUS_TOPIC_PREFIX",
               "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "TEST_DATABASE_PATH")

say = reporter("bench-outbox")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events per write run and relay backlog (2000)")
    parser.add_argument("--rounds", type=int, default=3, help="write + relay rounds, medians reported (3)")
    parser.add_argument("--per-transaction", type=int, default=10, help="events per transaction when writing (10)")
    parser.add_argument("--rate", type=float, default=20.0, help="latency phase: commits per second (20)")
    parser.add_argument("--duration", type=float, default=10.0, help="latency phase: seconds of writing (10)")
    parser.add_argument("--json", type=Path, help="also write the full results to this file")
    parser.add_argument("--process-timeout", type=float, default=120.0, help="seconds before a step gives up")
    add_broker_argument(parser)
    args = parser.parse_args()
    if args.events < 1 or args.rounds < 1 or args.per_transaction < 1:
        parser.error("--events, --rounds and --per-transaction must be at least 1")
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    return args


@dataclass
class Bench:
    """What every step needs: the broker, the PostgreSQL server, a scratch directory, the options."""

    broker: KafkaTestBroker
    postgres: TemporaryPostgres
    workdir: Path
    args: argparse.Namespace

    def new_database(self, label: str) -> str:
        """A fresh copy of the migrated template database."""
        import psycopg

        name = f"bench_{label}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(self.postgres.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
        return name

    def new_topic(self, label: str) -> str:
        """A fresh topic of ``PARTITIONS`` partitions."""
        topic = f"bench-outbox-{label}-{uuid.uuid4().hex[:6]}"
        self.broker.create_topics([topic], partitions=PARTITIONS)
        return topic

    def env(self, database: str, **settings: Any) -> dict[str, str]:
        """Environment of a Django process on ``database`` and the broker, with these extra settings."""
        env = child_env(CLEARED_ENV)
        env.update({
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TEST_POSTGRES_PORT": str(self.postgres.port),
            "TEST_POSTGRES_DB": database,
            "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "EVENT_BUS_SETTINGS_JSON": json.dumps(settings),
        })
        return env

    def log(self, name: str) -> Path:
        """A new file in the scratch directory for one process's output."""
        return self.workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"


# -- processes ----------------------------------------------------------------------------------


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "".join(path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def run_worker(bench: Bench, env: dict[str, str], name: str, *argv: str, timeout: float) -> dict[str, Any]:
    """Run the writer process to completion; its JSON result line (its logging goes to a file)."""
    log = bench.log(name)
    with open(log, "wb") as stderr:
        completed = subprocess.run([sys.executable, "-m", WORKER_MODULE, *argv], cwd=REPO_ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=timeout, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{name} exited {completed.returncode}; its log:\n{tail(log)}\n{completed.stdout[-2000:]}")
    return dict(json.loads(lines[-1]))


def start_relay(bench: Bench, env: dict[str, str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = bench.log(name)
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "manage.py", "relay_outbox"], cwd=REPO_ROOT, env=env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return process, log


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (a relay finishes its batch and exits 0), then kill if it takes over 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return int(process.returncode)


# -- database and broker checks -----------------------------------------------------------------


def migrate_template(bench: Bench) -> None:
    bench.postgres.create_database(TEMPLATE_DB)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO_ROOT, env=bench.env(TEMPLATE_DB),
                   check=True, timeout=bench.args.process_timeout)


def row_counts(connection: Any) -> dict[str, int]:
    """Outbox rows by status."""
    rows = connection.execute(f"SELECT status, count(*) FROM {TABLE} GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def ce_id_of(message: Any) -> str | None:
    """The ``ce_id`` header of a message (the event id), or None."""
    value = dict(message.headers() or []).get("ce_id")
    return value.decode() if isinstance(value, bytes) else value


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> dict[str, int]:
    """Messages and distinct ce_ids in ``topic``, read from the beginning of every partition.

    Read rather than counted from watermarks: the embedded broker's high watermark is the base
    offset of the last record batch plus one, not the offset after the last message. Reads until
    ``expected`` distinct events came (or ``timeout``), then half a second more to see any extras.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from edx_event_bus_kafka.internal.kafka.clients import CONFLUENT

    consumer = CONFLUENT.consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False, "log_level": 0, **CONSUMER_OPTIONS})
    messages = 0
    ids: set[str | None] = set()
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, number, OFFSET_BEGINNING) for number in partitions])
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < (quiet_until or deadline):
            message = consumer.poll(0.05)
            if message is None or message.error():
                continue
            messages += 1
            ids.add(ce_id_of(message))
            if quiet_until is None and len(ids) >= expected:
                quiet_until = time.monotonic() + 0.5
    finally:
        consumer.close()
    return {"messages": messages, "distinct_events": len(ids)}


# -- phases 1 and 2: write rate, relay rate -----------------------------------------------------


def measure_write(bench: Bench, mode: str, database: str, topic: str, round_number: int) -> dict[str, Any]:
    """One writer run in ``mode``, checked: N committed pending rows (outbox) or N delivered (on_commit)."""
    import psycopg

    args = bench.args
    env = bench.env(database, EVENT_BUS_KAFKA_DELIVERY_MODE=mode, EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT=False)
    result = run_worker(bench, env, f"write-{mode}-r{round_number}", "write", "--topic", topic,
                        "--events", str(args.events), "--per-transaction", str(args.per_transaction),
                        timeout=args.process_timeout)
    if mode == "outbox":
        with psycopg.connect(bench.postgres.dsn(database), autocommit=True) as connection:
            counts = row_counts(connection)
        result["rows"] = counts
        if counts != {"pending": args.events}:
            raise RuntimeError(f"outbox writer: expected {args.events} pending rows, found {counts}")
    else:
        counts = result["counts"]
        wanted = args.events + result["warmup"]
        in_topic = result["topic"] = read_topic(bench.broker.bootstrap_servers, topic, wanted)
        if counts["delivered"] != args.events or counts["failed"] or in_topic["distinct_events"] != wanted:
            raise RuntimeError(f"on_commit writer: {counts}, in the topic {in_topic} "
                               f"(expected {args.events} + {result['warmup']} warm-up events)")
    return result


def measure_relay(bench: Bench, database: str, topic: str, round_number: int) -> dict[str, Any]:
    """Start ``relay_outbox`` on the backlog, wait until nothing is pending, and time its batches."""
    import psycopg

    args = bench.args
    env = bench.env(database, EVENT_BUS_KAFKA_DELIVERY_MODE="outbox", EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT=False)
    with psycopg.connect(bench.postgres.dsn(database), autocommit=True) as connection:
        launched = time.time()
        process, log = start_relay(bench, env, f"relay-r{round_number}")
        first_seen = drained = None
        try:
            deadline = time.monotonic() + args.process_timeout
            while True:
                counts = row_counts(connection)
                now = time.time()
                if first_seen is None and counts.get("published"):
                    first_seen = now
                if not counts.get("pending"):
                    drained = now
                    break
                if process.poll() is not None:
                    raise RuntimeError(f"relay_outbox exited {process.returncode}; its log:\n{tail(log)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the backlog did not drain in {args.process_timeout} s ({counts})")
                time.sleep(0.01)
        finally:
            returncode = stop_process(process)
        batches = connection.execute(
            f"SELECT EXTRACT(EPOCH FROM published_at)::float8, count(*) FROM {TABLE} "
            "WHERE status = 'published' GROUP BY published_at ORDER BY published_at"
        ).fetchall()
        final_counts = row_counts(connection)
    if returncode != 0:
        raise RuntimeError(f"relay_outbox exited {returncode} after SIGTERM; its log:\n{tail(log)}")
    if final_counts != {"published": args.events}:
        raise RuntimeError(f"after the relay: {final_counts}, expected {args.events} published")
    in_topic = read_topic(bench.broker.bootstrap_servers, topic, args.events)
    if in_topic["distinct_events"] != args.events:
        raise RuntimeError(f"in the relay's topic: {in_topic}, expected {args.events} events")
    marks = [float(mark) for mark, _ in batches]
    sizes = [int(size) for _, size in batches]
    first_mark, last_mark = marks[0], marks[-1]
    steady_rows = args.events - sizes[0]
    return {
        "rows": args.events,
        "batches": len(batches),
        "batch_sizes": sorted(set(sizes)),
        "startup_s": first_mark - launched,
        "steady_s": last_mark - first_mark,
        "steady_rows_per_s": steady_rows / (last_mark - first_mark) if len(marks) > 1 and last_mark > first_mark
        else None,
        "rows_per_s_from_launch": args.events / (last_mark - launched),
        "polled_drain_s": (drained - first_seen) if drained is not None and first_seen is not None else None,
        "topic": in_topic,
    }


def write_and_relay_round(bench: Bench, round_number: int) -> dict[str, Any]:
    database = bench.new_database(f"r{round_number}")
    topics = {mode: bench.new_topic(f"{mode.replace('_', '')}-r{round_number}") for mode in WRITE_MODES}
    order = WRITE_MODES if round_number % 2 else tuple(reversed(WRITE_MODES))
    result: dict[str, Any] = {"round": round_number, "database": database, "order": list(order)}
    for mode in order:
        say(f"round {round_number}: writing {bench.args.events} events, {mode} ...")
        result[mode] = measure_write(bench, mode, database, topics[mode], round_number)
        say(f"round {round_number}: {mode}: {result[mode]['events_per_s']:.0f} events/s to the last commit, "
            f"{result[mode]['cpu_us_per_event']:.0f} CPU us/event")
    say(f"round {round_number}: relaying the backlog of {bench.args.events} rows ...")
    relay = result["relay"] = measure_relay(bench, database, topics["outbox"], round_number)
    say(f"round {round_number}: relay: {fmt(relay['steady_rows_per_s'], '.0f')} rows/s after the first batch, "
        f"start-up {relay['startup_s']:.2f} s")
    return result


# -- phase 3: latency from commit to consumer ---------------------------------------------------


class LatencyConsumer:
    """A plain confluent-kafka consumer in a thread; notes ``time.time()`` on arrival of each ce_id."""

    def __init__(self, bootstrap: str, topic: str):
        from edx_event_bus_kafka.internal.kafka.clients import CONFLUENT

        self.topic = topic
        self.consumer = CONFLUENT.consumer({
            "bootstrap.servers": bootstrap, "group.id": f"bench-latency-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 0, **CONSUMER_OPTIONS,
        })
        self.received: dict[str, float] = {}
        self.errors: list[str] = []
        self.assigned = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-latency-consumer", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        """Subscribe and wait until partitions are assigned (so nothing written later is missed)."""
        self.consumer.subscribe([self.topic], on_assign=lambda _consumer, _partitions: self.assigned.set())
        self._thread.start()
        if not self.assigned.wait(timeout):
            self.stop()
            raise RuntimeError(f"the latency consumer got no partitions of {self.topic} within {timeout} s")

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # poll returns as soon as one message is there (consume(n, t) would wait for n or t).
                message = self.consumer.poll(0.05)
                if message is None:
                    continue
                arrived = time.time()
                if message.error():
                    self.errors.append(str(message.error()))
                    continue
                ce_id = ce_id_of(message)
                if ce_id is not None:
                    self.received.setdefault(ce_id, arrived)
        finally:
            self.consumer.close()

    def wait_for(self, ids: list[str], timeout: float) -> None:
        """Return once every one of ``ids`` has arrived, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(event_id in self.received for event_id in ids):
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop polling and close the consumer (it leaves its group)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)



def latency_stats(committed: dict[str, float], received: dict[str, float]) -> dict[str, Any]:
    latencies = [(received[event_id] - at) * 1000 for event_id, at in committed.items() if event_id in received]
    stats: dict[str, Any] = {"committed": len(committed), "received": len(latencies),
                             "missing": len(committed) - len(latencies)}
    if latencies:
        stats.update({
            "min_ms": min(latencies), "p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99), "max_ms": max(latencies), "mean_ms": statistics.fmean(latencies),
        })
    return stats


def measure_latency(bench: Bench, variant: str) -> dict[str, Any]:
    """One latency run: ``publish_on_commit`` (the writer's flusher) or ``relay`` (a relay_outbox only)."""
    args = bench.args
    on_commit = variant == "publish_on_commit"
    database = bench.new_database(f"lat_{variant}")
    topic = bench.new_topic(f"latency-{variant.replace('_', '')}")
    settings = {"EVENT_BUS_KAFKA_DELIVERY_MODE": "outbox", "EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT": on_commit}
    env = bench.env(database, **settings)
    out = bench.workdir / f"commits-{variant}.json"
    consumer = LatencyConsumer(bench.broker.bootstrap_servers, topic)
    relay: tuple[subprocess.Popen[bytes], Path] | None = None
    relay_returncode = None
    consumer.start()
    try:
        if not on_commit:
            relay = start_relay(bench, env, f"relay-latency-{variant}")
        say(f"latency {variant}: committing {args.rate:g} events/s for {args.duration:g} s ...")
        result = run_worker(bench, env, f"latency-{variant}", "latency", "--topic", topic, "--rate", str(args.rate),
                            "--duration", str(args.duration), "--out", str(out),
                            timeout=args.duration + args.process_timeout)
        committed: dict[str, float] = json.loads(out.read_text(encoding="utf-8"))
        consumer.wait_for(list(committed), timeout=15.0)
    finally:
        consumer.stop()
        if relay is not None:
            relay_returncode = stop_process(relay[0])
    if relay is not None and relay_returncode != 0:
        raise RuntimeError(f"relay_outbox exited {relay_returncode}; its log:\n{tail(relay[1])}")
    result.update(variant=variant, relay_running=relay is not None, consumer_errors=consumer.errors[:5],
                  **latency_stats(committed, consumer.received))
    if result["missing"] or result["pending_at_end"]:
        raise RuntimeError(f"latency {variant}: {result['missing']} committed events never reached the consumer, "
                           f"{result['pending_at_end']} rows still pending")
    return result


# -- report -------------------------------------------------------------------------------------


def fmt(value: Any, spec: str, width: int = 0) -> str:
    """``value`` formatted with ``spec`` and right-aligned to ``width``; ``-`` when there is none."""
    return f"{'-' if value is None else format(value, spec):>{width}}"


def median_of(values: list[Any]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def summarize(rounds: list[dict[str, Any]], latency: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rounds if r.get("ok")]
    write: dict[str, Any] = {}
    for mode in WRITE_MODES:
        write[mode] = {
            "events_per_s": median_of([r[mode]["events_per_s"] for r in done]),
            "cpu_us_per_event": median_of([r[mode]["cpu_us_per_event"] for r in done]),
        }
    write["on_commit"]["delivered_events_per_s"] = median_of([r["on_commit"]["delivered_events_per_s"] for r in done])
    outbox_rate, direct_rate = write["outbox"]["events_per_s"], write["on_commit"]["events_per_s"]
    write["ratio_outbox_over_on_commit"] = outbox_rate / direct_rate if outbox_rate and direct_rate else None
    relay = {
        "steady_rows_per_s": median_of([r["relay"]["steady_rows_per_s"] for r in done]),
        "rows_per_s_from_launch": median_of([r["relay"]["rows_per_s_from_launch"] for r in done]),
        "startup_s": median_of([r["relay"]["startup_s"] for r in done]),
    }
    latencies = {
        r["variant"]: {name: r.get(name) for name in ("events", "p50_ms", "p95_ms", "p99_ms", "max_ms")}
        for r in latency if r.get("ok")
    }
    return {"rounds_ok": len(done), "rounds": len(rounds), "write": write, "relay": relay, "latency": latencies}


def print_report(rounds: list[dict[str, Any]], latency: list[dict[str, Any]], summary: dict[str, Any],
                 args: argparse.Namespace) -> None:
    print(f"\nOutbox benchmark: {args.events} COURSE_ENROLLMENT_CHANGED events per run, {args.per_transaction} per "
          f"transaction, {args.rounds} rounds, PostgreSQL, embedded broker, topics of {PARTITIONS} partitions\n")
    print("Phase 1, write rate (first transaction to last commit; on_commit also to the final flush)")
    print(f"{'round':>5} {'mode':<10} {'events/s':>10} {'CPU us/ev':>10} {'delivered/s':>12}  status")
    for r in rounds:
        if not r.get("ok"):
            print(f"{r['round']:>5} {'-':<10} {'-':>10} {'-':>10} {'-':>12}  FAILED: {first_line(r['error'])}")
            continue
        for mode in r["order"]:
            w = r[mode]
            print(f"{r['round']:>5} {mode:<10} {w['events_per_s']:>10.0f} {w['cpu_us_per_event']:>10.1f} "
                  f"{fmt(w.get('delivered_events_per_s'), '.0f', 12)}  ok")
    write = summary["write"]
    for mode in WRITE_MODES:
        print(f"median {mode:<10} {fmt(write[mode]['events_per_s'], '.0f', 8)} events/s  "
              f"{fmt(write[mode]['cpu_us_per_event'], '.1f', 6)} CPU us/event")
    print(f"ratio outbox / on_commit: {fmt(write['ratio_outbox_over_on_commit'], '.2f')}x events/s "
          f"(on_commit to the final flush: {fmt(write['on_commit']['delivered_events_per_s'], '.0f')} events/s)\n")

    print("Phase 2, relay_outbox on the outbox backlog (steady = rows after the first batch / first to last "
          "batch mark)")
    print(f"{'round':>5} {'rows':>6} {'batches':>7} {'steady rows/s':>14} {'rows/s from launch':>19} "
          f"{'start-up s':>11} {'steady s':>9} {'polled s':>9}")
    for r in rounds:
        if r.get("ok"):
            relay = r["relay"]
            print(f"{r['round']:>5} {relay['rows']:>6} {relay['batches']:>7} "
                  f"{fmt(relay['steady_rows_per_s'], '.0f', 14)} {relay['rows_per_s_from_launch']:>19.0f} "
                  f"{relay['startup_s']:>11.2f} {relay['steady_s']:>9.3f} {fmt(relay['polled_drain_s'], '.3f', 9)}")
    relay_summary = summary["relay"]
    print("(steady s: first to last batch mark in published_at; polled s: first published row seen to nothing "
          "pending, by SQL every 10 ms)")
    print(f"median steady {fmt(relay_summary['steady_rows_per_s'], '.0f')} rows/s; from launch "
          f"{fmt(relay_summary['rows_per_s_from_launch'], '.0f')} rows/s; start-up "
          f"{fmt(relay_summary['startup_s'], '.2f')} s\n")

    print(f"Phase 3, latency commit -> consumer ({args.rate:g} commits/s of 1 event for {args.duration:g} s)")
    print(f"{'variant':<18} {'events':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'min ms':>8}  "
          f"how published")
    for r in latency:
        how = ("writer's flusher thread after commit, no relay" if r["variant"] == "publish_on_commit"
               else f"relay_outbox only, poll interval {DEFAULT_POLL_INTERVAL_SEC:g} s (default)")
        if not r.get("ok"):
            print(f"{r['variant']:<18} FAILED: {first_line(r['error'])}")
            continue
        print(f"{r['variant']:<18} {r['received']:>6} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['max_ms']:>8.1f} {r['min_ms']:>8.1f}  {how}")
    print()


def first_line(text: Any) -> str:
    lines = str(text).splitlines()
    return lines[0] if lines else ""


def guarded(what: str, step: Any, *step_args: Any) -> dict[str, Any]:
    """Run one step; a failure is recorded (and the run goes on) instead of raised."""
    try:
        result = step(*step_args)
    except Exception as error:  # noqa: BLE001 -- reported in the table and the JSON, exit status 1
        say(f"{what} FAILED: {error}")
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    result["ok"] = True
    return result


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    broker = bench_broker(args.broker)
    postgres = TemporaryPostgres()
    rounds: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    try:
        broker.start()
        postgres.start()
        say(f"{args.broker} broker {broker.bootstrap_servers}, PostgreSQL on port {postgres.port}")
        with tempfile.TemporaryDirectory(prefix="bench-outbox-") as workdir:
            bench = Bench(broker, postgres, Path(workdir), args)
            migrate_template(bench)
            for round_number in range(1, args.rounds + 1):
                result = guarded(f"round {round_number}", write_and_relay_round, bench, round_number)
                rounds.append({"round": round_number, "order": list(WRITE_MODES), **result})
            for variant in ("publish_on_commit", "relay"):
                result = guarded(f"latency {variant}", measure_latency, bench, variant)
                latency.append({"variant": variant, **result})
    finally:
        postgres.stop()
        broker.close()
    summary = summarize(rounds, latency)
    summary["wall_s"] = time.monotonic() - started
    print_report(rounds, latency, summary, args)
    conditions = {
        "broker": args.broker, "events": args.events, "rounds": args.rounds, "per_transaction": args.per_transaction,
        "partitions": PARTITIONS, "latency_rate": args.rate, "latency_duration_s": args.duration,
        "outbox_poll_interval_sec": DEFAULT_POLL_INTERVAL_SEC, "cpus": os.cpu_count(),
        "clock": "time.time() in the writer (after commit) and in this process (on arrival)",
    }
    if args.json:
        report = {"conditions": conditions, "summary": summary, "rounds": rounds, "latency": latency}
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"summary": summary}), flush=True)
    everything = rounds + latency
    return 0 if all(r.get("ok") for r in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
