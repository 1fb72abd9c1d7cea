"""Worker processes (``manage.py consume_events`` ...) started for real by the tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edx_event_bus_kafka.testing import fast_consumer_config, wait_for
from tests.receivers import read_log

ROOT = Path(__file__).resolve().parents[2]

def fast_worker_settings() -> dict[str, Any]:
    """Settings that make workers quick to join, retry and stop on the chosen test broker."""
    return {
        "EVENT_BUS_KAFKA_CONSUMER_CONFIG": fast_consumer_config(),
        "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": 0.2,
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_SEC": 0.05,
        "EVENT_BUS_KAFKA_CONSUMER_POLL_FAILURE_SLEEP": 0.1,
    }


class Worker:
    """One worker process; its output goes to ``<tmp>/worker-N.out`` and its receiver log to ``log_path``."""

    def __init__(
        self, tmp_path: Path, bootstrap: str, argv: list[str], *, mode: str = "ok", name: str = "worker",
        settings: dict[str, Any] | None = None, log_path: Path | None = None, python: str = sys.executable,
    ):
        self.log_path = log_path or tmp_path / "received.jsonl"
        self.output_path = tmp_path / f"{name}.out"
        self.env = {
            **os.environ,
            "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "EVENT_BUS_SETTINGS_JSON": json.dumps({**fast_worker_settings(), **(settings or {})}),
            "TEST_RECEIVER_LOG": str(self.log_path),
            "TEST_RECEIVER_MODE": mode,
            "PYTHONUNBUFFERED": "1",
        }
        self.argv = [python, *argv]
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def consume_events(cls, tmp_path: Path, bootstrap: str, topic: str, group: str, *args: str,
                       **kwargs: Any) -> Worker:
        """``manage.py consume_events -t topic -g group ...``."""
        return cls(tmp_path, bootstrap, ["manage.py", "consume_events", "-t", topic, "-g", group, *args], **kwargs)

    def start(self) -> Worker:
        with open(self.output_path, "ab") as output:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT)
        return self

    def entries(self, phase: str | None = None) -> list[dict[str, Any]]:
        """Receiver log entries (of one phase, if given)."""
        return [e for e in read_log(str(self.log_path)) if phase is None or e["phase"] == phase]

    def wait_for_entries(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0,
                         what: str = "receiver log") -> list[dict[str, Any]]:
        """Wait until ``predicate(entries)`` holds; fails early with the output if the worker died."""
        def check() -> Any:
            entries = self.entries()
            if predicate(entries):
                return entries or True
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.output()}")
            return None
        result = wait_for(check, timeout=timeout, what=what)
        return result if isinstance(result, list) else []

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; kill if it does not stop."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.wait(10)

    def output(self) -> str:
        try:
            return self.output_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
