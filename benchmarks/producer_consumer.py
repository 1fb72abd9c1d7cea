"""Producer and consumer benchmark: our ``edx_event_bus_kafka`` against the reference 6.x, in the same run.

Usage (from the repository root, with our venv)::

    python benchmarks/producer_consumer.py [--events 5000] [--rounds 3] [--json results.json] [--profile DIR]
                                [--no-consumer] [--consumer-events N] [--broker tansu|apache]

One broker (``--broker``: the embedded Tansu, the default, or Apache Kafka with its full JIT) and one
schema registry stand-in (a subprocess, reached over HTTP) serve every round. Each round runs
``benchmarks/producer_worker.py`` once with our python and once with the reference venv's python (built
on demand by ``tests.support.reference_venv``), alternating which goes first, each on a fresh topic.
The worker times ``COURSE_ENROLLMENT_CHANGED.send_event`` through openedx-events'
``EVENT_BUS_PRODUCER_CONFIG`` handler until every delivery report is in. We report
the median events/s and worker CPU time per event of each, and the ratio ours / reference.

Each round also runs a baseline worker (``--no-baseline`` skips it): the same sends through a producer
that does nothing, i.e. what openedx-events itself costs per event (metadata, signal dispatch, its
INFO log line). That cost is the same whichever bus is installed, so the table also shows each
bus's own cost per event above the baseline and their ratio. Exits non-zero if any round did not
deliver every event. This is a command, not a timed test: numbers
depend on the machine, so no threshold is asserted here.

Consumer phase (``--no-consumer`` skips it). Each round, ``--consumer-events`` N events (default:
``--events``) of COURSE_ENROLLMENT_CHANGED, each with its own course so that the keys spread, are
produced by OUR producer (``producer_worker.py --fill``, schema registry framing, byte-identical to the
reference's) with the same metadata into two fresh topics of 3 partitions, one per implementation.
Each topic is then read from its beginning by a real ``consume_events`` process: ours is
``manage.py consume_events`` in our venv; the reference is openedx-events' ``consume_events`` with
``EVENT_BUS_CONSUMER = "edx_event_bus_kafka.KafkaEventConsumer"`` in the reference venv (``python
-I``, so nothing from this repository is on its path). Both get a minimal settings module written
to a temporary directory that holds only it and a copy of ``benchmarks/consumer_app.py``, whose
receiver notes ``perf_counter`` and ``process_time`` at the first and at the N-th event, then stops
the process: ours by SIGTERM to itself (its worker finishes the message and exits 0), the reference
by ``_shut_down()`` on its consumer instance (or, were that unreachable, ``os._exit(0)``).
Consumer events/s = (N - 1) / (t_last - t_first) inside the consumer process; CPU us/event is the
process CPU time (all threads) over the same span. First event after start = t_first - the moment the
process was launched (both on the machine's monotonic clock): interpreter and Django start-up, group
join and the first fetch. Both consumers log at INFO with audit logging
to a file in the same format and run without a monitoring backend (``OPENEDX_TELEMETRY = []``).
The embedded broker needs a short session timeout (a group join waits session.timeout.ms / 2) and a
short fetch wait (a fetch does not return early when data arrives); Apache Kafka gets the same
options (``fast_consumer_config``), so the two brokers are measured alike: ours gets them through
``EVENT_BUS_KAFKA_CONSUMER_CONFIG``; the reference, which has no such setting, gets the same options
plus ``auto.offset.reset=earliest`` (ours' default) added to its client config, and nothing else.
Ours takes up to ``EVENT_BUS_KAFKA_CONSUMER_BATCH_SIZE`` (500) messages per ``consume`` call, which
waits up to the poll timeout for a batch that is not full: both get a small poll timeout
(``--consumer-poll-timeout``, 0.05 s) so that the last batch does not dominate a short run.
"""
from __future__ import annotations

import argparse
import json
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # for tests.support; this process runs our venv, so ours is wanted

from benchmarks.common import CONSUMER_OPTIONS, add_broker_argument, bench_broker, child_env, reporter  # noqa: E402
from edx_event_bus_kafka.testing import KafkaTestBroker  # noqa: E402
from edx_event_bus_kafka.testing.brokers import stop_process  # noqa: E402
from tests.support.reference_venv import VENV_DIR, ensure_reference_venv  # noqa: E402

WORKER = REPO_ROOT / "benchmarks" / "producer_worker.py"
CONSUMER_APP = REPO_ROOT / "benchmarks" / "consumer_app.py"
CONSUMER_SETTINGS_MODULE = "bench_consumer_settings"
IMPLEMENTATIONS = ("ours", "reference")
REGISTRY_READY = "schema registry stand-in ready on "
CONSUMER_PARTITIONS = 3
# What the test brokers need of any consumer (see DESIGN.md section 7); nothing else is tuned.
CONSUMER_CLIENT_OPTIONS: dict[str, Any] = CONSUMER_OPTIONS
# The reference starts a new group at librdkafka's default "latest"; ours at "earliest".
REFERENCE_EXTRA_CLIENT_OPTIONS: dict[str, Any] = {"auto.offset.reset": "earliest"}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RECEIVED_MARK = "Message received from Kafka"
PRODUCED_LINE = re.compile(r"Message delivered to Kafka event bus: topic=(\S+), partition=(\d+),")
CONSUMER_COMMANDS = {
    "ours": "edx_event_bus_kafka.management.commands.consume_events",
    "reference": "openedx_events.management.commands.consume_events",
}
STOPPED_BY = {"ours": "SIGTERM to itself (our worker finishes the message and exits 0)",
              "reference": "its consumer's _shut_down() (the reference's own way out of its loop)"}


say = reporter("bench")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="timed events per round (default 5000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per implementation (default 3)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed events sent first in each worker")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--profile", type=Path,
                        help="write cProfile stats of each worker's timed part here (consumers: first to last event)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure openedx-events with a no-op producer (default: on)")
    parser.add_argument("--worker-timeout", type=float, default=600.0, help="seconds before a worker is killed")
    parser.add_argument("--consumer", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure consume_events throughput (default: on)")
    parser.add_argument("--consumer-events", type=int, help="events per consumer round (default: --events)")
    parser.add_argument("--consumer-poll-timeout", type=float, default=0.05,
                        help="EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT of both consumers (default 0.05 s)")
    parser.add_argument("--consumer-timeout", type=float, default=180.0,
                        help="seconds before a consume_events process is killed")
    add_broker_argument(parser)
    args = parser.parse_args()
    if args.consumer_events is None:
        args.consumer_events = args.events
    if args.consumer and args.consumer_events < 2:
        parser.error("--consumer-events must be at least 2 (the rate is timed from the first to the last event)")
    return args


def subprocess_env() -> dict[str, str]:
    """Our environment without anything that could make a worker import the wrong package or settings."""
    return child_env()


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
        stop_process(process, timeout=5, what="the schema registry stand-in")


def run_worker(label: str, python: Path, *, broker: KafkaTestBroker, registry_url: str, round_number: int,
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
    completed, json_lines = run_json_worker(command, workdir, args.worker_timeout, result, "worker")
    if completed is None:
        return result
    if completed.returncode != 0 or not json_lines:
        result["error"] = f"worker exited {completed.returncode}; stderr:\n{completed.stderr[-3000:]}"
    elif result["delivered"] < args.events:
        result["error"] = f"only {result['delivered']} of {args.events} events delivered ({result['failed']} failed)"
    else:
        result["error"] = check_package(label, result["package_file"])
    result["ok"] = result["error"] is None
    return result


def run_json_worker(command: list[str], workdir: Path, timeout: float, result: dict[str, Any],
                    name: str) -> tuple[subprocess.CompletedProcess[str] | None, list[str]]:
    """Run a worker process; merge its last JSON line into ``result``. None (error set) on timeout."""
    try:
        completed = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                                   env=subprocess_env(), check=False)
    except subprocess.TimeoutExpired:
        result["error"] = f"{name} timed out after {timeout} s"
        return None, []
    json_lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if json_lines:
        result.update(json.loads(json_lines[-1]))
    return completed, json_lines


def check_package(label: str, package_file: str) -> str | None:
    """Guard against the wrong ``edx_event_bus_kafka`` being imported (same import name in both venvs)."""
    path = Path(package_file).resolve()
    expected = VENV_DIR if label == "reference" else REPO_ROOT / "edx_event_bus_kafka"  # baseline runs ours
    if not path.is_relative_to(expected.resolve()):
        return f"{label} worker imported edx_event_bus_kafka from {path}, expected under {expected}"
    return None


# -- consumer phase ------------------------------------------------------------------------------


def fill_consumer_topics(topics: dict[str, str], *, broker: KafkaTestBroker, registry_url: str,
                         round_number: int, args: argparse.Namespace, workdir: Path,
                         partitions: int = CONSUMER_PARTITIONS) -> dict[str, Any]:
    """Create the round's consumer topics (3 partitions each) and fill them with OUR producer, in one process."""
    broker.create_topics(topics.values(), partitions=partitions)
    log_file = workdir / f"fill-r{round_number}.log"
    command = [
        sys.executable, "-I", str(WORKER), "--label", "fill", "--bootstrap-servers", broker.bootstrap_servers,
        "--schema-registry-url", registry_url, "--log-file", str(log_file), "--events", str(args.consumer_events),
    ]
    for topic in topics.values():
        command += ["--fill", topic]
    result: dict[str, Any] = {"label": "fill", "round": round_number, "topics": topics, "ok": False, "error": None}
    completed, json_lines = run_json_worker(command, workdir, args.worker_timeout, result, "fill worker")
    if completed is None:
        return result
    result["topics"] = topics
    wanted = args.consumer_events * len(topics)
    if completed.returncode != 0 or not json_lines:
        result["error"] = f"fill worker exited {completed.returncode}; stderr:\n{completed.stderr[-3000:]}"
    elif result["delivered"] < wanted:
        result["error"] = f"only {result['delivered']} of {wanted} events delivered ({result['failed']} failed)"
    else:
        result["error"] = check_package("ours", result["package_file"])
    if result["error"] is None:
        result["partition_counts"] = partition_counts(log_file)
        topic = next(iter(topics.values()))
        per_partition = result["partition_counts"].get(topic) or {"0": 0}
        busiest = int(max(per_partition, key=lambda number: per_partition[number]))
        result["value_prefix"] = first_value_prefix(broker.bootstrap_servers, topic, busiest)
        if not result["value_prefix"].startswith("00"):
            result["error"] = f"values do not use the schema registry framing (first bytes {result['value_prefix']})"
    result["ok"] = result["error"] is None
    return result


def partition_counts(log_file: Path) -> dict[str, dict[str, int]]:
    """Events per topic and partition, from the fill worker's delivery audit lines."""
    counts: dict[str, dict[str, int]] = {}
    with open(log_file, encoding="utf-8", errors="replace") as log:
        for line in log:
            match = PRODUCED_LINE.search(line)
            if match:
                per_topic = counts.setdefault(match.group(1), {})
                per_topic[match.group(2)] = per_topic.get(match.group(2), 0) + 1
    return {topic: dict(sorted(per_topic.items())) for topic, per_topic in counts.items()}


def first_value_prefix(bootstrap_servers: str, topic: str, partition: int, timeout: float = 10.0) -> str:
    """Hex of the first 5 bytes of the first message of ``partition`` (read without a group)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from edx_event_bus_kafka.internal.kafka.clients import CONFLUENT

    consumer = CONFLUENT.consumer({"bootstrap.servers": bootstrap_servers,
                                   "group.id": f"bench-inspect-{uuid.uuid4().hex}", "enable.auto.commit": False,
                                   "fetch.wait.max.ms": 10, "log_level": 0})
    try:
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                return bytes(message.value() or b"")[:5].hex()
    finally:
        consumer.close()
    return "none read"


def consumer_settings(label: str, *, broker: KafkaTestBroker, registry_url: str, args: argparse.Namespace,
                      result_file: Path, log_file: Path, profile_file: Path | None,
                      extra_settings: dict[str, Any] | None = None, receiver: dict[str, Any] | None = None) -> str:
    """The text of the minimal settings module of one ``consume_events`` process.

    ``extra_settings`` are added Django settings (ours only); ``receiver`` adds ``BENCH_CONSUMER`` options.
    """
    # The first app providing a command wins: ours must come first for ours; the reference has none.
    apps = ["edx_event_bus_kafka", "openedx_events"] if label == "ours" else ["openedx_events", "edx_event_bus_kafka"]
    bench: dict[str, Any] = {"implementation": label, "events": args.consumer_events, "result_file": str(result_file)}
    if profile_file is not None:
        bench["profile_file"] = str(profile_file)
    values: dict[str, Any] = {
        "SECRET_KEY": "benchmark-only",
        "USE_TZ": True,
        "INSTALLED_APPS": [*apps, "bench_consumer_app.BenchConsumerConfig"],
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        "EVENTS_SERVICE_NAME": "benchmark-consumer",
        "EVENT_BUS_CONSUMER": "edx_event_bus_kafka.KafkaEventConsumer",
        "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": registry_url,
        "EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED": True,
        "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": args.consumer_poll_timeout,
        "OPENEDX_TELEMETRY": [],
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": LOG_FORMAT}},
            "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "plain"}},
            "root": {"handlers": ["file"], "level": "INFO"},
        },
    }
    if label == "ours":
        values["EVENT_BUS_KAFKA_CONSUMER_CONFIG"] = dict(CONSUMER_CLIENT_OPTIONS)
    else:  # added to the reference's client config by bench_consumer_app (it has no setting for them)
        bench["client_options"] = {**CONSUMER_CLIENT_OPTIONS, **REFERENCE_EXTRA_CLIENT_OPTIONS}
    values.update(extra_settings or {})
    values["BENCH_CONSUMER"] = {**bench, **(receiver or {})}
    lines = [f'"""Consumer benchmark settings for {label} (written by benchmarks/producer_consumer.py)."""']
    lines += [f"{name} = {value!r}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def consumer_command(label: str, python: Path, *, topic: str, group: str, app_dir: Path) -> tuple[list[str], Path]:
    """The ``consume_events`` command line of one implementation, and the directory to run it in."""
    common = ["consume_events", "-t", topic, "-g", group, "--settings", CONSUMER_SETTINGS_MODULE,
              "--pythonpath", str(app_dir)]
    if label == "ours":
        return [str(python), str(REPO_ROOT / "manage.py"), *common], REPO_ROOT
    # Isolated: neither this repository nor PYTHONPATH; Django's --pythonpath adds only app_dir.
    return [str(python), "-I", "-m", "django", *common], app_dir


def run_consumer(label: str, python: Path, *, broker: KafkaTestBroker, registry_url: str, topic: str,
                 round_number: int, args: argparse.Namespace, workdir: Path, name: str | None = None,
                 extra_settings: dict[str, Any] | None = None, receiver: dict[str, Any] | None = None,
                 on_start: Callable[[subprocess.Popen[Any]], None] | None = None) -> dict[str, Any]:
    """One ``consume_events`` process reading ``topic`` from its beginning; returns its timings and checks.

    ``name`` tells several runs of one round apart; ``extra_settings`` and ``receiver`` go to
    :func:`consumer_settings`; ``on_start`` is called with the process once it runs.
    """
    app_dir = workdir / f"consumer-{name or label}-r{round_number}"
    app_dir.mkdir()
    shutil.copyfile(CONSUMER_APP, app_dir / "bench_consumer_app.py")
    result_file, log_file = app_dir / "result.jsonl", app_dir / "consumer.log"
    profile_file = None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        profile_file = args.profile.resolve() / f"consumer-{label}-r{round_number}.prof"
    (app_dir / f"{CONSUMER_SETTINGS_MODULE}.py").write_text(
        consumer_settings(label, broker=broker, registry_url=registry_url, args=args, result_file=result_file,
                          log_file=log_file, profile_file=profile_file, extra_settings=extra_settings,
                          receiver=receiver),
        encoding="utf-8",
    )
    group = f"bench-{label}-r{round_number}-{uuid.uuid4().hex[:8]}"
    command, cwd = consumer_command(label, python, topic=topic, group=group, app_dir=app_dir)
    result: dict[str, Any] = {"label": label, "round": round_number, "topic": topic, "group": group, "ok": False,
                              "error": None, "events": args.consumer_events}
    started = time.perf_counter()
    with open(app_dir / "output.txt", "w", encoding="utf-8") as output:
        process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, env=subprocess_env())
        if on_start is not None:
            on_start(process)
        try:
            result["returncode"] = process.wait(timeout=args.consumer_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            result["error"] = f"consume_events did not finish within {args.consumer_timeout} s"
    result["process_wall_s"] = time.perf_counter() - started
    records = read_consumer_records(result_file)
    if "first" in records:  # perf_counter is the machine's monotonic clock: comparable across processes
        result["first_event_after_start_s"] = records["first"]["t_first"] - started
    last = records.get("last")
    if last is not None:
        result.update(consumer_numbers(last, args.consumer_events))
        result["audit_received_lines"] = count_in_file(log_file, RECEIVED_MARK)
    if result["error"] is None:
        result["error"] = check_consumer(label, result, last, args.consumer_events)
    if result["error"] is not None:
        result["error"] += "\n" + tail(app_dir / "output.txt")
    result["ok"] = result["error"] is None
    return result


def read_consumer_records(result_file: Path) -> dict[str, dict[str, Any]]:
    """The receiver's records by stage ("first", "last")."""
    records: dict[str, dict[str, Any]] = {}
    if result_file.exists():
        for line in result_file.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                records[record["stage"]] = record
    return records


def consumer_numbers(last: dict[str, Any], events: int) -> dict[str, Any]:
    """Events/s and CPU us/event from the first to the N-th event, and what the receiver reported."""
    elapsed = last["t_last"] - last["t_first"]
    cpu = last["cpu_last"] - last["cpu_first"]
    intervals = events - 1
    numbers = {key: last[key] for key in ("received", "distinct_event_ids", "version", "package_file", "commands",
                                          "consumer_class", "client_options_added", "stopped_by", "profiled")}
    numbers.update({key: last.get(key) for key in ("order_violations", "threads")})
    numbers.update({
        "elapsed_s": elapsed,
        "t_first": last["t_first"],
        "t_last": last["t_last"],
        "cpu_s": cpu,
        "events_per_s": intervals / elapsed if elapsed > 0 else 0.0,
        "cpu_us_per_event": cpu / intervals * 1e6,
        "repo_on_sys_path": any(is_repo_path(entry) for entry in last["sys_path"]),
    })
    return numbers


def is_repo_path(entry: str) -> bool:
    """Whether a sys.path entry is this repository itself (where our package lives)."""
    return bool(entry) and Path(entry).resolve() == REPO_ROOT.resolve()


def check_consumer(label: str, result: dict[str, Any], last: dict[str, Any] | None, events: int) -> str | None:
    """What is wrong with a consumer run, if anything."""
    if last is None:
        return f"no result written: the receiver did not see all {events} events"
    problems = []
    if result.get("returncode") != 0:
        problems.append(f"consume_events exited {result.get('returncode')}")
    if result["distinct_event_ids"] != events:
        problems.append(f"{result['distinct_event_ids']} distinct events reached the receiver, not {events}")
    if result["audit_received_lines"] < events:
        problems.append(f"only {result['audit_received_lines']} '{RECEIVED_MARK}' audit lines")
    if result["commands"] != [CONSUMER_COMMANDS[label]]:
        problems.append(f"ran {result['commands']}, expected {CONSUMER_COMMANDS[label]}")
    if label == "reference" and result["repo_on_sys_path"]:
        problems.append(f"{REPO_ROOT} was on the reference process's sys.path")
    problems.append(check_package(label, result["package_file"]) or "")
    problems = [problem for problem in problems if problem]
    return "; ".join(problems) if problems else None


def count_in_file(path: Path, mark: str) -> int:
    """Lines of ``path`` containing ``mark`` (0 if there is no such file)."""
    if not path.exists():
        return 0
    with open(path, encoding="utf-8", errors="replace") as lines:
        return sum(1 for line in lines if mark in line)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a process's output, for error messages."""
    try:
        return "".join(path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def run_consumer_round(round_number: int, pythons: dict[str, Path], *, broker: KafkaTestBroker,
                       registry_url: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """Fill one fresh topic per implementation, then run each implementation's consumer on its own."""
    tag = uuid.uuid4().hex[:8]
    topics = {label: f"bench-consume-{label}-r{round_number}-{tag}" for label in IMPLEMENTATIONS}
    say(f"round {round_number}: filling consumer topics with {args.consumer_events} events each ...")
    filled = fill_consumer_topics(topics, broker=broker, registry_url=registry_url, round_number=round_number,
                                  args=args, workdir=workdir)
    if not filled["ok"]:
        say(f"round {round_number}: filling the consumer topics FAILED: {filled['error']}")
        return [filled]
    say(f"round {round_number}: filled in {filled['elapsed_s']:.2f} s, events per partition "
        f"{filled['partition_counts']}, value prefix {filled['value_prefix']}")
    results = [filled]
    order = IMPLEMENTATIONS if round_number % 2 else tuple(reversed(IMPLEMENTATIONS))
    for label in order:
        say(f"round {round_number}: consumer {label} ...")
        result = run_consumer(label, pythons[label], broker=broker, registry_url=registry_url, topic=topics[label],
                              round_number=round_number, args=args, workdir=workdir)
        results.append(result)
        if result["ok"]:
            say(f"round {round_number}: consumer {label}: {result['events_per_s']:.0f} events/s, "
                f"{result['cpu_us_per_event']:.1f} CPU us/event (process ran {result['process_wall_s']:.1f} s)")
        else:
            say(f"round {round_number}: consumer {label} FAILED: {result['error']}")
    return results


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
    print(f"\nProducer benchmark on {args.broker}: {args.events} events x {args.rounds} rounds "
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


def summarize_consumer(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Consumer medians per implementation and the ratios ours / reference."""
    summary: dict[str, Any] = {}
    for label in IMPLEMENTATIONS:
        rounds = [r for r in results if r["label"] == label and r["ok"]]
        summary[label] = {
            "version": rounds[0]["version"] if rounds else None,
            "rounds_ok": len(rounds),
            "events_per_s": statistics.median(r["events_per_s"] for r in rounds) if rounds else None,
            "cpu_us_per_event": statistics.median(r["cpu_us_per_event"] for r in rounds) if rounds else None,
            "first_event_after_start_s": statistics.median(r["first_event_after_start_s"] for r in rounds)
            if rounds else None,
        }
    ours, reference = summary["ours"], summary["reference"]
    both = ours["events_per_s"] and reference["events_per_s"]
    summary["throughput_ratio"] = ours["events_per_s"] / reference["events_per_s"] if both else None
    summary["cpu_ratio_reference_over_ours"] = (
        reference["cpu_us_per_event"] / ours["cpu_us_per_event"] if both and ours["cpu_us_per_event"] else None
    )
    summary["target_ratio"] = 4.0
    summary["target_met"] = summary["throughput_ratio"] >= 4.0 if summary["throughput_ratio"] else None
    return summary


def consumer_conditions(args: argparse.Namespace) -> dict[str, Any]:
    """How the consumer phase ran, for the table and the JSON report."""
    return {
        "events": args.consumer_events,
        "partitions": CONSUMER_PARTITIONS,
        "produced_by": "ours (producer_worker.py --fill, schema registry framing; byte-identical to the reference's)",
        "poll_timeout_s": args.consumer_poll_timeout,
        "client_options_both": CONSUMER_CLIENT_OPTIONS,
        "client_options_reference_only": REFERENCE_EXTRA_CLIENT_OPTIONS,
        "commands": CONSUMER_COMMANDS,
        "stopped_by": STOPPED_BY,
    }


def print_consumer_table(results: list[dict[str, Any]], summary: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"Consumer benchmark on {args.broker}: {args.consumer_events} events x {args.rounds} rounds "
          f"(COURSE_ENROLLMENT_CHANGED, "
          f"{CONSUMER_PARTITIONS} partitions, produced by ours with the schema registry framing, byte-identical to "
          f"the reference's;\nconsume_events from the beginning to a receiver, first to last event, audit logging, "
          f"poll timeout {args.consumer_poll_timeout} s)\n")
    print(f"{'impl':<10} {'round':>5} {'events/s':>10} {'CPU us/ev':>10} {'elapsed s':>10} {'received':>10}  status")
    for r in results:
        if r["label"] == "fill":
            if not r["ok"]:
                print(f"{'fill':<10} {r['round']:>5} {'-':>10} {'-':>10} {'-':>10} {'-':>10}  FAILED: "
                      + str(r["error"]).splitlines()[0])
            continue
        if r.get("events_per_s") is not None:
            numbers = f"{r['events_per_s']:>10.0f} {r['cpu_us_per_event']:>10.1f} {r['elapsed_s']:>10.3f} "
            numbers += f"{r['distinct_event_ids']:>10}"
        else:
            numbers = f"{'-':>10} {'-':>10} {'-':>10} {'-':>10}"
        status = "ok" if r["ok"] else "FAILED: " + str(r["error"]).splitlines()[0]
        print(f"{r['label']:<10} {r['round']:>5} {numbers}  {status}")
    print()
    for label in IMPLEMENTATIONS:
        s = summary[label]
        if s["events_per_s"] is None:
            print(f"{label:<10} median: no successful round")
        else:
            print(f"{label:<10} median: {s['events_per_s']:>10.0f} events/s  {s['cpu_us_per_event']:>8.1f} CPU us/event"
                  f"  first event {s['first_event_after_start_s']:.2f} s after start"
                  f"  (edx-event-bus-kafka {s['version']})")
    if summary["throughput_ratio"] is not None:
        print(f"ratio ours/reference: {summary['throughput_ratio']:.2f}x events/s (target >= "
              f"{summary['target_ratio']:.0f}x: {'met' if summary['target_met'] else 'NOT met'}), "
              f"reference uses {summary['cpu_ratio_reference_over_ours']:.2f}x our CPU per event")
    print(f"ours: manage.py consume_events (our command), options {CONSUMER_CLIENT_OPTIONS} via "
          f"EVENT_BUS_KAFKA_CONSUMER_CONFIG; stopped by {STOPPED_BY['ours']}")
    print(f"reference: openedx-events' consume_events with EVENT_BUS_CONSUMER, python -I; only the session/fetch "
          f"timing options {CONSUMER_CLIENT_OPTIONS} and {REFERENCE_EXTRA_CLIENT_OPTIONS} were added to its client "
          f"config (wrapped load_common_settings); stopped by {STOPPED_BY['reference']}")
    print()


def run_rounds(args: argparse.Namespace, pythons: dict[str, Path], broker: KafkaTestBroker, registry_url: str,
               workdir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every round: the producer workers, then (unless --no-consumer) the consumers; returns both results."""
    results: list[dict[str, Any]] = []
    consumer_results: list[dict[str, Any]] = []
    for round_number in range(1, args.rounds + 1):
        order = IMPLEMENTATIONS if round_number % 2 else tuple(reversed(IMPLEMENTATIONS))
        if args.baseline:
            order = (*order, "baseline")
        for label in order:
            say(f"round {round_number}: {label} ...")
            result = run_worker(label, pythons[label], broker=broker, registry_url=registry_url,
                                round_number=round_number, args=args, workdir=workdir)
            results.append(result)
            if result["ok"]:
                say(f"round {round_number}: {label}: {result['events_per_s']:.0f} events/s, "
                    f"{result['cpu_us_per_event']:.1f} CPU us/event")
            else:
                say(f"round {round_number}: {label} FAILED: {result['error']}")
        if args.consumer:
            consumer_results += run_consumer_round(round_number, pythons, broker=broker, registry_url=registry_url,
                                                   args=args, workdir=workdir)
    return results, consumer_results


def main() -> int:
    args = parse_args()
    reference_python = ensure_reference_venv()
    pythons = {"ours": Path(sys.executable), "reference": reference_python, "baseline": Path(sys.executable)}
    # Apache Kafka with its full JIT compiler: its quick-start mode trades peak throughput for start-up.
    broker = bench_broker(args.broker)
    registry = RegistryProcess()
    try:
        broker.start()
        registry.start()
        say(f"{args.broker} broker {broker.bootstrap_servers}, schema registry stand-in {registry.url}")
        with tempfile.TemporaryDirectory(prefix="event-bus-bench-") as workdir:
            results, consumer_results = run_rounds(args, pythons, broker, registry.url, Path(workdir))
    finally:
        registry.stop()
        broker.close()
    summary = summarize(results)
    report: dict[str, Any] = {"broker": args.broker, "events": args.events, "rounds": args.rounds,
                              "warmup": args.warmup, "summary": summary, "results": results}
    print_table(results, summary, args)
    if args.consumer:
        summary["consumer"] = summarize_consumer(consumer_results)
        report["consumer"] = {**consumer_conditions(args), "results": consumer_results}
        print_consumer_table(consumer_results, summary["consumer"], args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"summary": summary}), flush=True)
    everything = results + consumer_results
    return 0 if results and all(r["ok"] for r in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
