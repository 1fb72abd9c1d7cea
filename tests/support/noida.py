"""noida-db's Kafka service, used only for replay-by-time tests.

The embedded Tansu broker answers every ListOffsets-by-time request with 0, so replaying from a
time cannot be tested on it. noida-db (a PyPI wheel) answers it correctly. It needs consumer
session timeouts of at least 6 s, and idle consumers busy-poll it, so use it for nothing else.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edx_event_bus_kafka.testing import _free_loopback_port, wait_for

#: Consumer options noida-db needs.
NOIDA_CONSUMER_CONFIG: dict[str, Any] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                                         "fetch.wait.max.ms": 10}


class NoidaKafka:
    """A noida-db process serving only Kafka on a free loopback port, with its data in a temp dir."""

    def __init__(self) -> None:
        self.port = _free_loopback_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="noida-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> NoidaKafka:
        binary = Path(sys.executable).parent / "noida-db"
        self.process = subprocess.Popen(
            [str(binary), "start", "--only", "kafka", "--kafka-port", str(self.port), "--host", "127.0.0.1"],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._ready, timeout=30, what="noida-db's Kafka service")
        return self

    def _ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0}).list_topics(timeout=0.5)
        except Exception:  # noqa: BLE001 -- not ready yet
            return False
        return True

    def create_topic(self, name: str, partitions: int) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
            future.result(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
