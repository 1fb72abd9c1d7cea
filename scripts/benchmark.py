"""Producer benchmark: our ``edx_event_bus_kafka`` against the reference 6.x, in the same run.

Usage (from the repository root, with our venv)::

    python scripts/benchmark.py [--events 5000] [--rounds 3] [--json results.json] [--profile DIR]

One embedded broker and one schema registry stand-in (a subprocess, reached over HTTP) serve every
round. Each round runs ``scripts/bench_worker.py`` once with our python and once with the reference
venv's python (built on demand by ``tests.support.reference_venv``), alternating which goes first,
each on a fresh topic. The worker times ``COURSE_ENROLLMENT_CHANGED.send_event`` through
openedx-events' ``EVENT_BUS_PRODUCER_CONFIG`` handler until every delivery report is in. We report
the median events/s and worker CPU time per event of each, and the ratio ours / reference.

Each round also runs a baseline worker (``--no-baseline`` skips it): the same sends through a producer
that does nothing, i.e. what openedx-events itself costs per event (metadata, signal dispatch, its
INFO log line). That cost is the same whichever bus is installed, so the table also shows each
bus's own cost per event above the baseline and their ratio. Exits non-zero if any round did not
deliver every event. This is a command, not a timed test: numbers
depend on the machine, so no threshold is asserted here.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import statistics
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
    sys.path.insert(0, str(REPO_ROOT))  # for tests.support; this process runs our venv, so ours is wanted

from edx_event_bus_kafka.testing import EmbeddedKafkaBroker  # noqa: E402
from tests.support.reference_venv import VENV_DIR, ensure_reference_venv  # noqa: E402

WORKER = REPO_ROOT / "scripts" / "bench_worker.py"
IMPLEMENTATIONS = ("ours", "reference")
REGISTRY_READY = "schema registry stand-in ready on "


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="timed events per round (default 5000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per implementation (default 3)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed events sent first in each worker")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of each worker's timed part here")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure openedx-events with a no-op producer (default: on)")
    parser.add_argument("--worker-timeout", type=float, default=600.0, help="seconds before a worker is killed")
    return parser.parse_args()


def subprocess_env() -> dict[str, str]:
    """Our environment without anything that could make a worker import the wrong package or settings."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


class RegistryProcess:
    """The schema registry stand-in as a subprocess, so both workers reach it over HTTP like a real one."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> RegistryProcess:
        """Start it and wait for its ready line, which carries the URL."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.schema_registry", "--port", "0"],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=subprocess_env(),
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if not ready:
                continue
            line = self.process.stdout.readline()
            seen.append(line)
            if REGISTRY_READY in line:
                self.url = line.split(REGISTRY_READY, 1)[1].strip()
                # Keep reading its output so a full pipe can never block it.
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("the schema registry stand-in did not start; its output:\n" + "".join(seen))

    def _drain(self) -> None:
        process = self.process
        if process is not None and process.stdout is not None:
            for _line in process.stdout:
                pass

    def stop(self) -> None:
        """Terminate it (kill if it does not exit promptly)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def run_worker(label: str, python: Path, *, broker: EmbeddedKafkaBroker, registry_url: str, round_number: int,
               args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One worker run on a fresh topic; returns its JSON result, with ``ok`` and ``error`` added."""
    topic = f"bench-{label}-r{round_number}-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], partitions=1)
    log_file = workdir / f"{label}-r{round_number}.log"
    command = [
        str(python), "-I", str(WORKER), "--label", label, "--bootstrap-servers", broker.bootstrap_servers,
        "--schema-registry-url", registry_url, "--topic", topic, "--log-file", str(log_file),
        "--events", str(args.events), "--warmup", str(args.warmup),
    ]
    if label == "baseline":
        command.append("--baseline")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        command += ["--profile", str(args.profile.resolve() / f"{label}-r{round_number}.prof")]
    result: dict[str, Any] = {"label": label, "round": round_number, "topic": topic, "ok": False, "error": None}
    try:
        completed = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=args.worker_timeout,
                                   env=subprocess_env(), check=False)
    except subprocess.TimeoutExpired:
        result["error"] = f"worker timed out after {args.worker_timeout} s"
        return result
    json_lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if json_lines:
        result.update(json.loads(json_lines[-1]))
    if completed.returncode != 0 or not json_lines:
        result["error"] = f"worker exited {completed.returncode}; stderr:\n{completed.stderr[-3000:]}"
    elif result["delivered"] < args.events:
        result["error"] = f"only {result['delivered']} of {args.events} events delivered ({result['failed']} failed)"
    else:
        result["error"] = check_package(label, result["package_file"])
    result["ok"] = result["error"] is None
    return result


def check_package(label: str, package_file: str) -> str | None:
    """Guard against the wrong ``edx_event_bus_kafka`` being imported (same import name in both venvs)."""
    path = Path(package_file).resolve()
    expected = VENV_DIR if label == "reference" else REPO_ROOT / "edx_event_bus_kafka"  # baseline runs ours
    if not path.is_relative_to(expected.resolve()):
        return f"{label} worker imported edx_event_bus_kafka from {path}, expected under {expected}"
    return None


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per implementation, the ratios ours / reference, and costs above the baseline."""
    summary: dict[str, Any] = {}
    for label in (*IMPLEMENTATIONS, "baseline"):
        rounds = [r for r in results if r["label"] == label and r["ok"]]
        summary[label] = {
            "version": rounds[0]["version"] if rounds else None,
            "rounds_ok": len(rounds),
            "events_per_s": statistics.median(r["events_per_s"] for r in rounds) if rounds else None,
            "cpu_us_per_event": statistics.median(r["cpu_us_per_event"] for r in rounds) if rounds else None,
        }
    ours, reference = summary["ours"], summary["reference"]
    summary["throughput_ratio"] = (
        ours["events_per_s"] / reference["events_per_s"] if ours["events_per_s"] and reference["events_per_s"]
        else None
    )
    summary["cpu_ratio_reference_over_ours"] = (
        reference["cpu_us_per_event"] / ours["cpu_us_per_event"]
        if ours["cpu_us_per_event"] and reference["cpu_us_per_event"] else None
    )
    baseline = summary["baseline"]
    if baseline["events_per_s"]:
        for label in IMPLEMENTATIONS:
            s = summary[label]
            s["wall_us_above_baseline"] = (
                1e6 / s["events_per_s"] - 1e6 / baseline["events_per_s"] if s["events_per_s"] else None
            )
            s["cpu_us_above_baseline"] = (
                s["cpu_us_per_event"] - baseline["cpu_us_per_event"] if s["cpu_us_per_event"] else None
            )
        if ours.get("wall_us_above_baseline") and reference.get("wall_us_above_baseline"):
            summary["bus_cost_ratio_reference_over_ours"] = (
                reference["wall_us_above_baseline"] / ours["wall_us_above_baseline"]
            )
    return summary


def print_table(results: list[dict[str, Any]], summary: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nProducer benchmark: {args.events} events x {args.rounds} rounds "
          f"(COURSE_ENROLLMENT_CHANGED via EVENT_BUS_PRODUCER_CONFIG, schema registry, audit logging)\n")
    print(f"{'impl':<10} {'round':>5} {'events/s':>10} {'CPU us/ev':>10} {'elapsed s':>10} {'delivered':>10}  status")
    for r in results:
        if r.get("events_per_s") is not None:
            numbers = f"{r['events_per_s']:>10.0f} {r['cpu_us_per_event']:>10.1f} {r['elapsed_s']:>10.3f} "
            numbers += f"{r['delivered']:>10}"
        else:
            numbers = f"{'-':>10} {'-':>10} {'-':>10} {'-':>10}"
        status = "ok" if r["ok"] else "FAILED: " + str(r["error"]).splitlines()[0]
        print(f"{r['label']:<10} {r['round']:>5} {numbers}  {status}")
    print()
    for label in (*IMPLEMENTATIONS, "baseline"):
        s = summary[label]
        if s["events_per_s"] is None and label == "baseline" and not args.baseline:
            continue
        if s["events_per_s"] is None:
            print(f"{label:<10} median: no successful round")
        else:
            print(f"{label:<10} median: {s['events_per_s']:>10.0f} events/s  {s['cpu_us_per_event']:>8.1f} CPU us/event"
                  f"  (edx-event-bus-kafka {s['version']})")
    if summary["throughput_ratio"] is not None:
        print(f"ratio ours/reference: {summary['throughput_ratio']:.2f}x events/s, "
              f"reference uses {summary['cpu_ratio_reference_over_ours']:.2f}x our CPU per event")
    if summary.get("bus_cost_ratio_reference_over_ours"):
        ours, reference = summary["ours"], summary["reference"]
        print(f"above the baseline (the bus's own cost): ours {ours['wall_us_above_baseline']:.1f} us/event "
              f"({ours['cpu_us_above_baseline']:.1f} CPU us), reference {reference['wall_us_above_baseline']:.1f} "
              f"us/event ({reference['cpu_us_above_baseline']:.1f} CPU us): reference takes "
              f"{summary['bus_cost_ratio_reference_over_ours']:.2f}x our time")
    print()


def main() -> int:
    args = parse_args()
    reference_python = ensure_reference_venv()
    pythons = {"ours": Path(sys.executable), "reference": reference_python, "baseline": Path(sys.executable)}
    results: list[dict[str, Any]] = []
    broker = EmbeddedKafkaBroker()
    registry = RegistryProcess()
    try:
        broker.start()
        registry.start()
        say(f"broker {broker.bootstrap_servers}, schema registry stand-in {registry.url}")
        with tempfile.TemporaryDirectory(prefix="event-bus-bench-") as workdir:
            for round_number in range(1, args.rounds + 1):
                order = IMPLEMENTATIONS if round_number % 2 else tuple(reversed(IMPLEMENTATIONS))
                if args.baseline:
                    order = (*order, "baseline")
                for label in order:
                    say(f"round {round_number}: {label} ...")
                    result = run_worker(label, pythons[label], broker=broker, registry_url=registry.url,
                                        round_number=round_number, args=args, workdir=Path(workdir))
                    results.append(result)
                    if result["ok"]:
                        say(f"round {round_number}: {label}: {result['events_per_s']:.0f} events/s, "
                            f"{result['cpu_us_per_event']:.1f} CPU us/event")
                    else:
                        say(f"round {round_number}: {label} FAILED: {result['error']}")
    finally:
        registry.stop()
        broker.stop()
    summary = summarize(results)
    report = {"events": args.events, "rounds": args.rounds, "warmup": args.warmup, "summary": summary,
              "results": results}
    print_table(results, summary, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"summary": summary}), flush=True)
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
