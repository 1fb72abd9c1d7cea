"""The event_bus_health probe as a real process next to a real worker that gets stuck and recovers.

The heartbeat file and the probe's broker check are tested in tests/unit/test_health.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support.schema_registry import SchemaRegistryStandIn
from tests.support.workers import Worker

ROOT = Path(__file__).resolve().parents[2]


def probe(heartbeat: Path, max_age: float, *extra: str, env: dict | None = None) -> tuple[int, str]:
    """Run ``manage.py event_bus_health`` as a probe would; its exit status and output line."""
    result = subprocess.run(
        [sys.executable, "manage.py", "event_bus_health", "--heartbeat-file", str(heartbeat), "--max-age",
         str(max_age), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env or os.environ.copy(), check=False,
    )
    return result.returncode, result.stdout.strip()


@pytest.mark.integration
def test_health_probe__fails_while_loop_is_stuck_and_recovers(bus_settings, kafka_topic, tmp_path):
    """The probe exits non-zero while the worker is blocked on a message (registry down) and 0 once it recovers."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    registry = SchemaRegistryStandIn().start()
    bus_settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = registry.url
    producer = create_producer()
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    producer.send(signal=ENROLLMENT_SIGNAL, topic=kafka_topic, event_key_field=ENROLLMENT_KEY_FIELD,
                  event_data=enrollment_event_data(1), event_metadata=metadata)
    assert producer.prepare_for_shutdown(10) == 0
    registry_url, registry_port = registry.url, registry.port
    registry.stop()  # the worker cannot fetch the writer schema: an infrastructure error, retried forever

    heartbeat = tmp_path / "worker.alive"
    worker = Worker.consume_events(
        tmp_path, bootstrap, kafka_topic, f"health-{uuid.uuid4().hex[:6]}", "--heartbeat-file", str(heartbeat),
        settings={"EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": registry_url,
                  "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_MAX_SEC": 0.5},
    ).start()
    try:
        wait_for(heartbeat.exists, timeout=30, what="the first heartbeat")
        wait_for(lambda: probe(heartbeat, 3)[0] == 1, timeout=60, what="the probe to report the stuck loop")
        code, line = probe(heartbeat, 3)
        assert code == 1 and line.startswith("stuck:"), line

        registry.start(port=registry_port)  # same port, same schemas: the message can now be decoded
        worker.wait_for_entries(lambda e: any(x["phase"] == "done" for x in e), timeout=60)
        wait_for(lambda: probe(heartbeat, 3)[0] == 0, timeout=30, what="the probe to recover")
        assert probe(heartbeat, 3)[1].startswith("ok:")
        assert probe(heartbeat, 3, "--check-broker", env={**os.environ, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS":
                                                            bootstrap})[0] == 0
    finally:
        assert worker.stop() == 0, worker.output()
        if registry._server is not None:
            registry.stop()
    assert not heartbeat.exists(), "a cleanly stopped worker removes its heartbeat"


@pytest.mark.integration
def test_health_probe__a_standby_worker_is_alive_and_says_so_and_require_partitions_fails_only_it(
    bus_settings, kafka_broker, tmp_path,
):
    """Two workers on a one-partition topic: both are alive; the probe's line tells which one consumes."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    kafka_topic, group = f"standby-{uuid.uuid4().hex[:6]}", f"standby-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([kafka_topic], partitions=1)
    files = [tmp_path / "first.alive", tmp_path / "second.alive"]
    workers = [Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, "--heartbeat-file", str(path),
                                     name=path.stem).start() for path in files]
    try:
        def roles() -> list[str] | None:
            lines = [probe(path, 60)[1] for path in files]
            settled = sorted("partitions [0]" in line for line in lines) == [False, True]
            return lines if settled and any("no partitions assigned" in line for line in lines) else None

        lines = wait_for(roles, timeout=90, what="one worker to consume the partition and the other to stand by")
        consuming, standby = (files[0], files[1]) if "partitions [0]" in lines[0] else (files[1], files[0])
        code, line = probe(standby, 60)
        assert code == 0 and line.startswith("ok:") and "a standby while there are more workers" in line, line
        code, line = probe(standby, 60, "--require-partitions")
        assert code == 1 and line.startswith("idle:") and "no partitions assigned" in line, line
        code, line = probe(consuming, 60, "--require-partitions")
        assert code == 0 and "partitions [0]" in line, line
    finally:
        for worker in workers:
            assert worker.stop() == 0, worker.output()
