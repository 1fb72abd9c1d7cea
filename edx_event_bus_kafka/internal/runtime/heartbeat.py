"""Liveness of workers through a heartbeat file, for Kubernetes/systemd probes.

A worker started with ``--heartbeat-file PATH`` rewrites the file (atomically, at most once a
second) whenever its loop makes progress: a poll that returned, a message that is done, a relay
pass that finished. A loop blocked on one failing message (infrastructure errors are retried
without limit) stops writing it, so the file's age tells a probe that the worker is stuck.
``./manage.py event_bus_health --heartbeat-file PATH --max-age SEC`` is that probe.

A consumer's file also says what it is doing (its assigned partitions, the brokers it cannot
reach), so the probe's line tells a busy worker from a standby one that has no partitions (more
workers than partitions): both are alive, and only ``--require-partitions`` fails the second.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_INTERVAL_SEC = 1.0


class Heartbeat:
    """Writes ``{"time", "pid", "worker", "progress"}`` and the worker's ``state()`` to a file on progress."""

    def __init__(self, path: str | os.PathLike[str] | None, worker: str,
                 state: Callable[[], dict[str, Any]] | None = None):
        self.path = Path(path) if path else None
        self.worker = worker
        self.state = state
        self.progress = 0
        self._last_write = 0.0

    def beat(self, *, force: bool = False) -> None:
        """Record progress; the file is rewritten at most once per second unless ``force``."""
        self.progress += 1
        if self.path is None:
            return
        now = time.time()
        if not force and now - self._last_write < MIN_INTERVAL_SEC:
            return
        self._last_write = now
        payload = json.dumps({"time": now, "pid": os.getpid(), "worker": self.worker, "progress": self.progress,
                              **(self.state() if self.state is not None else {})})
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(payload, encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError:
            pass  # a full or read-only disk must not stop event processing; the probe will notice

    def clear(self) -> None:
        """Remove the file at a clean exit, so a stopped worker is not mistaken for a live one."""
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


@dataclass(frozen=True)
class Health:
    """The probe's verdict and a one-line reason."""

    healthy: bool
    reason: str


def evaluate(path: str | os.PathLike[str], max_age: float, now: float | None = None, *,
             require_partitions: bool = False) -> Health:
    """Whether the heartbeat at ``path`` is fresh enough (and, if required, its consumer has partitions)."""
    now = time.time() if now is None else now
    try:
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        age = now - float(data["time"])
    except FileNotFoundError:
        return Health(False, f"no heartbeat file at {path} (worker not started, or stopped)")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return Health(False, f"unreadable heartbeat file {path}: {error}")
    if not 0 < float(data["time"]) <= now + 60:
        return Health(False, f"unreadable heartbeat file {path}: time {data['time']!r} is not a recent Unix time")
    who = f"{data.get('worker', 'worker')} pid {data.get('pid')}"
    if age > max_age:
        return Health(False, f"stuck: {who} made no progress for {age:.1f} s (limit {max_age:g} s)")
    if require_partitions and data.get("partitions") == []:
        return Health(False, f"idle: {who} has no partitions assigned (--require-partitions); "
                             f"it made progress {age:.1f} s ago{_doing(data)}")
    return Health(True, f"ok: {who} made progress {age:.1f} s ago{_doing(data)}")


def _doing(data: dict[str, Any]) -> str:
    """What the worker said it is doing, for the probe's line ("" for a worker that says nothing)."""
    notes = []
    if isinstance(data.get("partitions"), list):
        notes.append(f"partitions {data['partitions']}" if data["partitions"] else
                     "no partitions assigned (a standby while there are more workers than partitions, or a rebalance)")
    if data.get("unreachable"):
        notes.append(f"brokers unreachable: {', '.join(map(str, data['unreachable']))}")
    return "".join(f"; {note}" for note in notes)
