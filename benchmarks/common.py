"""What the benchmarks share: the broker and its options, the environment of child processes, percentiles."""
from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

from edx_event_bus_kafka.testing import (  # noqa: E402 -- after REPO_ROOT, which the scripts put on sys.path
    BROKER_KINDS,
    KafkaTestBroker,
    fast_consumer_config,
    make_test_broker,
    selected_broker_kind,
)

#: Consumer options every benchmark consumer gets, the same on both brokers (quick joins, short fetch waits).
CONSUMER_OPTIONS: dict[str, Any] = fast_consumer_config("tansu", "classic")

#: Variables that would make a child process import the wrong package or settings, or reach the wrong services.
CHILD_ENV_CLEARED = ("PYTHONPATH", "PYTHONHOME", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")


def reporter(name: str) -> Callable[[str], None]:
    """A function printing progress lines ``[name] text`` on stderr (stdout carries the results)."""
    def say(text: str) -> None:
        print(f"[{name}] {text}", file=sys.stderr, flush=True)
    return say


def add_broker_argument(parser: argparse.ArgumentParser) -> None:
    """``--broker tansu|apache``, defaulting to ``EVENT_BUS_TEST_KAFKA_BROKER`` (or tansu)."""
    parser.add_argument("--broker", choices=BROKER_KINDS, default=selected_broker_kind(),
                        help="the broker (default: $EVENT_BUS_TEST_KAFKA_BROKER or tansu)")


def bench_broker(kind: str) -> KafkaTestBroker:
    """A not yet started broker of ``kind``; Apache Kafka with its full JIT (its quick start costs throughput)."""
    return make_test_broker(kind, **({"quick_start": False} if kind == "apache" else {}))


def child_env(cleared: Iterable[str] = ()) -> dict[str, str]:
    """The environment of this process without :data:`CHILD_ENV_CLEARED` and ``cleared``."""
    drop = {*CHILD_ENV_CLEARED, *cleared}
    return {name: value for name, value in os.environ.items() if name not in drop}


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
