"""Inbox benchmark: what deduplication adds per consumed event on PostgreSQL, and what purging costs.

Usage (from the repository root, with our venv)::

    python benchmarks/inbox.py [--events 3000] [--rounds 5] [--json results.json] [--broker tansu|apache]
                               [--no-fsync]

This is a command, not a timed test: numbers depend on the machine, so nothing is asserted against
a threshold; the targets (under 1 ms added per event; purging under 5% of the worker's time) are
printed next to the figures. It exits non-zero only when a run did not do what it should (an event
missing or processed twice, a process failing). One broker (``--broker``) and one throw-away
PostgreSQL server serve the whole run. PostgreSQL runs with its defaults, fsync and synchronous
commit on, so a commit waits for the disk as in production (``--no-fsync`` runs it as the tests do).

Each round runs three variants, in an order that rotates from round to round, each on a fresh copy
of a migrated database and a fresh topic of 3 partitions holding ``--events`` N events
(COURSE_ENROLLMENT_CHANGED, each with its own course), read from the beginning by a new group:

* ``off``: ``EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION = False``, the baseline, measured in the same run;
* ``on``: deduplication on for the group, with the worker's purging off
  (``EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC = None``);
* ``on+purge``: deduplication on and the worker purging, with ``EVENT_BUS_KAFKA_INBOX_RETENTION_SEC
  = 1`` and ``EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC = 1`` (batch size: the default 1000). The rows
  the worker writes expire a second later and it deletes them as it goes, about as many as it
  inserts once the run is past its first seconds: the steady state of a deployment, whose rows of a
  week ago expire at the rate new ones arrive, compressed into seconds. The worker purges between
  batches of messages, one batch of rows at a time: at least every second, and after every batch of
  messages while it finds full batches.

The consumer is ``benchmarks/inbox_worker.py consume``: ``KafkaEventConsumer`` in its own process,
whose receiver writes one row per event (a receiver with a database effect; without deduplication
that row commits on its own, with it in one transaction with the inbox row). Timed inside the process
from the first to the N-th event (N - 1 events): wall and CPU microseconds per event. Purge share =
seconds the worker spent purging within that span / the span. As a run deletes fewer rows than it
inserts (the first second's rows are not expired yet), the steady-state share is also derived: the
purge time per deleted row over the ``on+purge`` time per event, i.e. the share when every event's
row is eventually deleted. Figures are medians over the rounds (several shorter runs rather than a
few long ones, so that a burst of load from other processes on the machine moves one run, not the
median); the added cost is ``on`` minus ``off`` per event, and the ratios are against ``off``
(``on+purge`` also against ``on``). The inbox table's size per row (``pg_total_relation_size`` after ``VACUUM``,
indexes included) is taken after the ``on`` runs. Everything else keeps its default (audit logging
on, batch size 500), but the poll timeout is 0.05 s so that the last, partial batch does not wait a
second.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # for tests.support

from benchmarks.common import CONSUMER_OPTIONS, add_broker_argument, bench_broker, child_env, reporter  # noqa: E402
from edx_event_bus_kafka.testing import KafkaTestBroker  # noqa: E402
from tests.support.postgres import TemporaryPostgres  # noqa: E402

WORKER_MODULE = "benchmarks.inbox_worker"
TEMPLATE_DB = "bench_inbox_template"
PARTITIONS = 3
VARIANTS = ("off", "on", "on+purge")
TARGET_ADDED_MS = 1.0
TARGET_PURGE_SHARE = 0.05
CLEARED_ENV = ("EVENT_BUS_SETTINGS_JSON", "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "EVENT_BUS_TOPIC_PREFIX",
               "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "TEST_DATABASE_PATH", "TEST_RECEIVER_LOG", "TEST_EFFECT_MODE")

say = reporter("bench-inbox")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="events per run (3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the three variants, medians reported (5)")
    parser.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=True,
                        help="PostgreSQL with fsync on, as in production (default), or off, as in the tests")
    parser.add_argument("--json", type=Path, help="also write the full results to this file")
    parser.add_argument("--process-timeout", type=float, default=300.0, help="seconds before a step gives up")
    add_broker_argument(parser)
    args = parser.parse_args()
    if args.events < 2 or args.rounds < 1:
        parser.error("--events must be at least 2 and --rounds at least 1")
    return args


@dataclass
class Bench:
    """The broker, the PostgreSQL server, a scratch directory and the options: what every run needs."""

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

    def env(self, database: str, **settings: Any) -> dict[str, str]:
        """Environment of a Django process on ``database`` and the broker, with these settings."""
        env = child_env(CLEARED_ENV)
        env.update({
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TEST_POSTGRES_PORT": str(self.postgres.port),
            "TEST_POSTGRES_DB": database,
            "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "EVENT_BUS_SETTINGS_JSON": json.dumps(settings),
        })
        return env

    def run(self, env: dict[str, str], name: str, *argv: str) -> dict[str, Any]:
        """Run the worker module to completion; its JSON result line (its logging goes to a file)."""
        log = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with open(log, "wb") as stderr:
            completed = subprocess.run([sys.executable, "-m", WORKER_MODULE, *argv], cwd=REPO_ROOT, env=env,
                                       stdout=subprocess.PIPE, stderr=stderr, text=True,
                                       timeout=self.args.process_timeout, check=False)
        lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
        if completed.returncode != 0 or not lines:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
            raise RuntimeError(f"{name} exited {completed.returncode}; its log:\n{tail}")
        return dict(json.loads(lines[-1]))


def variant_settings(variant: str, group: str) -> dict[str, Any]:
    settings: dict[str, Any] = {"EVENT_BUS_KAFKA_CONSUMER_CONFIG": CONSUMER_OPTIONS,
                                "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": 0.05}
    if variant != "off":
        settings["EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION"] = {group: True}
    if variant == "on":
        settings["EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC"] = None
    if variant == "on+purge":
        settings.update({"EVENT_BUS_KAFKA_INBOX_RETENTION_SEC": 1, "EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC": 1})
    return settings


def inbox_table(bench: Bench, database: str) -> tuple[int, int]:
    """Rows in the inbox table, and its size in bytes with its indexes (after VACUUM)."""
    import psycopg

    with psycopg.connect(bench.postgres.dsn(database), autocommit=True) as connection:
        connection.execute("VACUUM edx_event_bus_kafka_inboxevent")
        row = connection.execute("SELECT count(*), pg_total_relation_size('edx_event_bus_kafka_inboxevent') "
                                 "FROM edx_event_bus_kafka_inboxevent").fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def measure(bench: Bench, variant: str, round_number: int) -> dict[str, Any]:
    """One consumer run of ``variant`` on a fresh database and topic, checked: N effects, the inbox rows."""
    args = bench.args
    label = variant.replace("+", "_")
    database = bench.new_database(f"{label}_r{round_number}")
    topic = f"bench-inbox-{label.replace('_', '-')}-r{round_number}-{uuid.uuid4().hex[:6]}"
    bench.broker.create_topics([topic], partitions=PARTITIONS)
    group = f"bench-inbox-{uuid.uuid4().hex[:8]}"
    bench.run(bench.env(database), f"fill-{label}", "fill", "--topic", topic, "--events", str(args.events))
    result = bench.run(bench.env(database, **variant_settings(variant, group)), f"consume-{label}-r{round_number}",
                       "consume", "--topic", topic, "--group", group, "--events", str(args.events))
    left, table_bytes = inbox_table(bench, database)
    expected_left = 0 if variant == "off" else args.events - result["purged_total"]
    problems = []
    if result["effects"] != args.events:
        problems.append(f"{result['effects']} effect rows for {args.events} events")
    if left != expected_left:
        problems.append(f"{left} inbox rows left, expected {expected_left}")
    if variant == "on+purge" and not result["purged"]:
        problems.append("nothing was purged while the events were processed")
    return {**result, "variant": variant, "inbox_rows_left": left, "table_bytes": table_bytes,
            "problems": problems, "ok": not problems}


def run_round(bench: Bench, round_number: int) -> list[dict[str, Any]]:
    shift = (round_number - 1) % len(VARIANTS)
    order = VARIANTS[shift:] + VARIANTS[:shift]
    results = []
    for variant in order:
        say(f"round {round_number}: {variant} ...")
        result = measure(bench, variant, round_number)
        say(f"round {round_number}: {variant}: {result['wall_us_per_event']:.0f} us/event wall, "
            f"{result['cpu_us_per_event']:.0f} us/event CPU, purged {result['purged']} in {result['purge_s']:.3f} s"
            + ("" if result["ok"] else f"; PROBLEMS: {'; '.join(result['problems'])}"))
        results.append({"round": round_number, **result})
    return results


def median(results: list[dict[str, Any]], variant: str, key: str) -> float:
    return float(statistics.median(r[key] for r in results if r["variant"] == variant))


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    figures = {variant: {key: median(results, variant, key)
                         for key in ("wall_us_per_event", "cpu_us_per_event", "events_per_s")}
               for variant in VARIANTS}
    shares = [r["purge_s"] / r["span_s"] for r in results if r["variant"] == "on+purge"]
    off, on, purging = (figures[variant]["wall_us_per_event"] for variant in VARIANTS)
    summary = {
        "per_variant": figures,
        "added_wall_us_per_event": on - off,
        "added_cpu_us_per_event": figures["on"]["cpu_us_per_event"] - figures["off"]["cpu_us_per_event"],
        "on_over_off": on / off,
        "on_purge_over_off": purging / off,
        "on_purge_over_on": purging / on,
        "purge_share_of_worker_time": statistics.median(shares),
        "purge_us_per_row": statistics.median(r["purge_s"] * 1e6 / r["purged"] for r in results
                                              if r["variant"] == "on+purge" and r["purged"]),
        "purged_rows_per_run": median(results, "on+purge", "purged"),
        "purge_s_per_run": median(results, "on+purge", "purge_s"),
        "table_bytes_per_row": statistics.median(r["table_bytes"] / r["inbox_rows_left"] for r in results
                                                 if r["variant"] == "on" and r["inbox_rows_left"]),
    }
    summary["steady_state_purge_share"] = summary["purge_us_per_row"] / purging
    return summary


def print_report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nInbox benchmark: {args.events} events per run, {args.rounds} rounds, broker {args.broker}, "
          f"PostgreSQL fsync {'on' if args.fsync else 'off'}, {os.cpu_count()} CPUs (medians)\n")
    print(f"{'variant':<10} {'events/s':>9} {'wall us/event':>14} {'CPU us/event':>13} {'wall vs off':>12}")
    off = summary["per_variant"]["off"]["wall_us_per_event"]
    for variant in VARIANTS:
        figures = summary["per_variant"][variant]
        print(f"{variant:<10} {figures['events_per_s']:>9.0f} {figures['wall_us_per_event']:>14.0f} "
              f"{figures['cpu_us_per_event']:>13.0f} {figures['wall_us_per_event'] / off:>11.2f}x")
    added_ms = summary["added_wall_us_per_event"] / 1000
    share, steady = summary["purge_share_of_worker_time"], summary["steady_state_purge_share"]
    print(f"\nAdded by deduplication: {added_ms:.3f} ms per event wall ({summary['added_cpu_us_per_event']:.0f} us "
          f"CPU in the worker); target < {TARGET_ADDED_MS:.0f} ms: {'met' if added_ms < TARGET_ADDED_MS else 'MISSED'}")
    print(f"Purging {summary['purged_rows_per_run']:.0f} expired rows while processing {args.events} events took "
          f"{summary['purge_s_per_run']:.3f} s: {share:.2%} of the worker's time; at steady state (one row deleted "
          f"per event, {summary['purge_us_per_row']:.1f} us each) {steady:.2%}; target < {TARGET_PURGE_SHARE:.0%}: "
          f"{'met' if max(share, steady) < TARGET_PURGE_SHARE else 'MISSED'} "
          f"(on+purge / on = {summary['on_purge_over_on']:.2f}x)")
    print(f"Inbox table on PostgreSQL: {summary['table_bytes_per_row']:.0f} bytes per row with its indexes "
          f"(after the 'on' runs, {args.events} rows)")


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    broker = bench_broker(args.broker)
    postgres = TemporaryPostgres(durable=args.fsync)
    results: list[dict[str, Any]] = []
    try:
        broker.start()
        postgres.start()
        say(f"{args.broker} broker {broker.bootstrap_servers}, PostgreSQL on port {postgres.port} "
            f"(fsync {'on' if args.fsync else 'off'})")
        with tempfile.TemporaryDirectory(prefix="bench-inbox-") as workdir:
            bench = Bench(broker, postgres, Path(workdir), args)
            postgres.create_database(TEMPLATE_DB)
            subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO_ROOT,
                           env=bench.env(TEMPLATE_DB), check=True, timeout=args.process_timeout)
            for round_number in range(1, args.rounds + 1):
                results.extend(run_round(bench, round_number))
    finally:
        postgres.stop()
        broker.close()
    summary = summarize(results)
    summary["wall_s"] = time.monotonic() - started
    print_report(summary, args)
    if args.json:
        conditions = {"broker": args.broker, "events": args.events, "rounds": args.rounds,
                      "fsync": args.fsync, "partitions": PARTITIONS, "cpus": os.cpu_count()}
        args.json.write_text(json.dumps({"conditions": conditions, "summary": summary, "runs": results}, indent=2)
                             + "\n", encoding="utf-8")
    print(json.dumps({"summary": summary}), flush=True)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
