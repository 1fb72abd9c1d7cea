"""Parallel consumption benchmark: one worker, one partition, a receiver that waits 5 ms per event.

Usage (from the repository root, with our venv)::

    python benchmarks/parallel.py [--broker tansu|apache] [--events 2000] [--backlog 100000] [--json FILE]

One broker and one schema registry stand-in serve every run. Topics of one partition are filled by
our producer with ``--events`` events, each with its own course, so there are that many distinct
keys (2,000 by default). Each topic is read from its beginning by one ``consume_events`` process
whose receiver (``consumer_app.py``) waits 5 ms per event (``time.sleep``: I/O-bound, the GIL is
released) and checks that, per key, events arrive in the order they were sent:

* the reference 6.x (openedx-events' ``consume_events``, one message at a time);
* ours with ``--concurrency 1`` (today's loop);
* ours with ``--concurrency 16`` (key ordering).

Events/s is timed inside the consumer process from the first to the N-th event, as in
``producer_consumer.py``. Then a CPU-bound receiver (1 ms of computation per event) with
concurrency 1 and 16: no gain is expected under the GIL, nor a loss. Last, a backlog of
``--backlog`` events drained with concurrency 16 while the worker's resident memory (VmRSS) is
sampled every half second: it must stay flat, since fetching pauses at
``EVENT_BUS_KAFKA_CONSUMER_MAX_IN_FLIGHT`` messages. This is a command, not a timed test.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import producer_consumer as bench  # noqa: E402
from benchmarks.common import add_broker_argument, bench_broker, reporter  # noqa: E402
from edx_event_bus_kafka.testing import KafkaTestBroker  # noqa: E402
from tests.support.reference_venv import ensure_reference_venv  # noqa: E402

say = reporter("bench-parallel")
IO_WORK = {"sleep": 0.005}
CPU_WORK = {"spin": 0.001}


def rss_sampler(samples: list[tuple[float, int]]) -> Any:
    """An ``on_start`` hook that records ``(perf_counter, VmRSS KiB)`` of the process every 0.5 s until it ends."""
    def start(process: Any) -> None:
        def sample() -> None:
            while process.poll() is None:
                try:
                    with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
                        for line in status:
                            if line.startswith("VmRSS:"):
                                samples.append((time.perf_counter(), int(line.split()[1])))
                except OSError:
                    return
                threading.Event().wait(0.5)  # sampling pace, not synchronisation
        threading.Thread(target=sample, daemon=True).start()
    return start


def fill(broker: KafkaTestBroker, registry_url: str, events: int, workdir: Path, label: str) -> str:
    """A fresh one-partition topic holding ``events`` events, one course (key) each."""
    topic = f"bench-parallel-{label}-{uuid.uuid4().hex[:6]}"
    args = argparse.Namespace(consumer_events=events, worker_timeout=900.0)
    filled = bench.fill_consumer_topics({label: topic}, broker=broker, registry_url=registry_url, round_number=0,
                                        args=args, workdir=workdir, partitions=1)
    if not filled["ok"]:
        raise RuntimeError(f"filling {topic} failed: {filled['error']}")
    return topic


def consume(label: str, python: Path, topic: str, events: int, *, broker: KafkaTestBroker, registry_url: str,
            workdir: Path, name: str, concurrency: int | None, work: dict[str, float],
            samples: list[tuple[float, int]] | None = None) -> dict[str, Any]:
    args = argparse.Namespace(consumer_events=events, consumer_poll_timeout=0.05, consumer_timeout=1800.0,
                              profile=None)
    extra = {"EVENT_BUS_KAFKA_CONSUMER_CONCURRENCY": concurrency} if concurrency else {}
    result = bench.run_consumer(label, python, broker=broker, registry_url=registry_url, topic=topic,
                                round_number=1, args=args, workdir=workdir, name=name, extra_settings=extra,
                                receiver={"work": work, "check_order": True},
                                on_start=rss_sampler(samples) if samples is not None else None)
    if result["ok"] and result.get("order_violations"):
        result["ok"] = False
        result["error"] = f"{result['order_violations']} events arrived before an earlier event of their key"
    status = (f"{result['events_per_s']:.0f} events/s, {result.get('order_violations')} order violations"
              if result["ok"] else f"FAILED: {str(result['error']).splitlines()[0]}")
    say(f"{name}: {status}")
    return {"name": name, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_broker_argument(parser)
    parser.add_argument("--events", type=int, default=2000, help="events (= distinct keys) per run (2000)")
    parser.add_argument("--backlog", type=int, default=100_000, help="events of the memory run (100000)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    ours, reference = Path(sys.executable), ensure_reference_venv()
    broker, registry = bench_broker(args.broker), bench.RegistryProcess()
    results: list[dict[str, Any]] = []
    samples: list[tuple[float, int]] = []
    try:
        broker.start()
        registry.start()
        say(f"{args.broker} broker {broker.bootstrap_servers}; {args.events} events per run, 5 ms I/O receiver")
        with tempfile.TemporaryDirectory(prefix="bench-parallel-") as folder:
            workdir = Path(folder)
            common: dict[str, Any] = {"broker": broker, "registry_url": registry.url, "workdir": workdir}
            runs = [("reference", reference, "reference-io", None, IO_WORK),
                    ("ours", ours, "ours-c1-io", 1, IO_WORK),
                    ("ours", ours, "ours-c16-io", 16, IO_WORK),
                    ("ours", ours, "ours-c1-cpu", 1, CPU_WORK),
                    ("ours", ours, "ours-c16-cpu", 16, CPU_WORK)]
            for label, python, name, concurrency, work in runs:
                topic = fill(broker, registry.url, args.events, workdir, name)
                results.append(consume(label, python, topic, args.events, name=name, concurrency=concurrency,
                                       work=work, **common))
            say(f"backlog: filling {args.backlog} events ...")
            topic = fill(broker, registry.url, args.backlog, workdir, "backlog")
            results.append(consume("ours", ours, topic, args.backlog, name="ours-c16-backlog", concurrency=16,
                                   work=IO_WORK, samples=samples, **common))
    finally:
        registry.stop()
        broker.close()
    by_name = {r["name"]: r for r in results}
    print(f"\nParallel consumption on {args.broker}: one partition, {args.events} events = distinct keys\n")
    print(f"{'run':<18} {'events/s':>9} {'CPU us/ev':>10} {'order':>6}  status")
    for r in results:
        numbers = (f"{r['events_per_s']:>9.0f} {r['cpu_us_per_event']:>10.0f} {r['order_violations']:>6}"
                   if r["ok"] else f"{'-':>9} {'-':>10} {'-':>6}")
        print(f"{r['name']:<18} {numbers}  {'ok' if r['ok'] else 'FAILED'}")
    summary: dict[str, Any] = {}
    if all(r["ok"] for r in results):
        c16 = by_name["ours-c16-io"]["events_per_s"]
        summary = {
            "io_c16_over_c1": c16 / by_name["ours-c1-io"]["events_per_s"],
            "io_c16_over_reference": c16 / by_name["reference-io"]["events_per_s"],
            "cpu_c16_over_c1": by_name["ours-c16-cpu"]["events_per_s"] / by_name["ours-c1-cpu"]["events_per_s"],
        }
        print(f"\nI/O-bound: concurrency 16 = {summary['io_c16_over_c1']:.1f}x concurrency 1, "
              f"{summary['io_c16_over_reference']:.1f}x the reference (target >= 10x both)")
        print(f"CPU-bound: concurrency 16 = {summary['cpu_c16_over_c1']:.2f}x concurrency 1 (no gain expected)")
    backlog = by_name.get("ours-c16-backlog", {})
    draining = [rss for at, rss in samples if backlog.get("t_first", 0) <= at <= backlog.get("t_last", 0)]
    if draining:  # from the first to the last event: start-up (interpreter, Django) left out
        quarter = max(1, len(draining) // 4)
        by_quarter = [max(draining[i:i + quarter]) for i in range(0, len(draining), quarter)][:4]
        summary["backlog_rss_kib"] = {"first": draining[0], "max": max(draining), "last": draining[-1],
                                      "by_quarter": by_quarter}
        print(f"backlog of {args.backlog}: {backlog.get('events_per_s', 0):.0f} events/s; worker RSS while draining: "
              f"first {draining[0] / 1024:.0f} MiB, max {max(draining) / 1024:.0f} MiB, last {draining[-1] / 1024:.0f} "
              f"MiB; max per quarter of the drain {[round(v / 1024) for v in by_quarter]} MiB")
    if args.json:
        args.json.write_text(json.dumps({"broker": args.broker, "results": results, "summary": summary}, indent=2,
                                        default=str) + "\n", encoding="utf-8")
    print(json.dumps({"summary": summary}), flush=True)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
