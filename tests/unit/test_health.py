"""Worker liveness: the heartbeat file, and event_bus_health's broker check on the in-memory Kafka."""
from __future__ import annotations

import io
import json
import time

import pytest
from django.core.management import call_command

from edx_event_bus_kafka.internal.runtime.heartbeat import Heartbeat, evaluate


def probe(*args: str) -> tuple[int, str]:
    """``event_bus_health`` run in this process: its exit status and output line."""
    out = io.StringIO()
    try:
        call_command("event_bus_health", *args, stdout=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue().strip()
    return 0, out.getvalue().strip()


def test_evaluate__fresh_stale_missing_and_unreadable(tmp_path):
    """A fresh heartbeat is healthy; an old, missing or unreadable one is not, with a reason saying which."""
    path = tmp_path / "alive"
    assert not evaluate(path, 10).healthy and "no heartbeat file" in evaluate(path, 10).reason
    Heartbeat(path, "test-worker").beat(force=True)
    assert evaluate(path, 10).healthy and "test-worker" in evaluate(path, 10).reason
    stale = evaluate(path, 10, now=time.time() + 60)
    assert not stale.healthy and "stuck" in stale.reason and "limit 10 s" in stale.reason
    path.write_text("{not json", encoding="utf-8")
    assert not evaluate(path, 10).healthy and "unreadable" in evaluate(path, 10).reason


def test_heartbeat__rate_limited_and_removed_at_clean_exit(tmp_path):
    """Beats rewrite the file at most once a second; clear() removes it so a stopped worker is not 'alive'."""
    path = tmp_path / "alive"
    heartbeat = Heartbeat(path, "w")
    heartbeat.beat(force=True)
    first = json.loads(path.read_text())["progress"]
    heartbeat.beat()  # within the same second: counted, not written
    assert json.loads(path.read_text())["progress"] == first and heartbeat.progress == first + 1
    heartbeat.clear()
    assert not path.exists()


@pytest.fixture
def fresh_heartbeat(tmp_path):
    path = tmp_path / "alive"
    Heartbeat(path, "worker").beat(force=True)
    return str(path)


def test_check_broker__answering_broker_is_healthy(bus, fresh_heartbeat):
    """With --check-broker a fresh heartbeat and a broker that answers metadata requests exit 0."""
    assert probe("--heartbeat-file", fresh_heartbeat, "--check-broker") == (
        0, "ok: heartbeat fresh and broker answers")


def test_check_broker__refusing_broker_is_unhealthy_saying_why(bus, fresh_heartbeat):
    """A broker refusing our credentials makes the probe exit 1 with the refusal's reason."""
    bus.refuse_connections()
    code, line = probe("--heartbeat-file", fresh_heartbeat, "--check-broker")
    assert code == 1 and line.startswith("Kafka refused the health probe: authentication failed")


def test_stale_heartbeat__is_unhealthy_without_asking_the_broker(bus, tmp_path):
    """A missing heartbeat fails the probe before any broker check (no client is made)."""
    code, line = probe("--heartbeat-file", str(tmp_path / "missing"), "--check-broker")
    assert code == 1 and "no heartbeat file" in line
    assert bus.clients_of("admin") == []


def test_evaluate__says_what_a_consumer_is_doing_and_require_partitions_fails_a_standby(tmp_path):
    """The file carries the worker's partitions and unreachable brokers; only --require-partitions judges them."""
    path = tmp_path / "alive"
    state = {"partitions": [0, 2], "unreachable": []}
    Heartbeat(path, "consume_events t/g", state=lambda: state).beat(force=True)
    health = evaluate(path, 10, require_partitions=True)
    assert health.healthy and health.reason.endswith("s ago; partitions [0, 2]"), health.reason
    state = {"partitions": [], "unreachable": ["10.0.0.1:9092"]}
    Heartbeat(path, "consume_events t/g", state=lambda: state).beat(force=True)
    alive = evaluate(path, 10)
    assert alive.healthy and "no partitions assigned (a standby" in alive.reason, alive.reason
    assert "brokers unreachable: 10.0.0.1:9092" in alive.reason
    idle = evaluate(path, 10, require_partitions=True)
    assert not idle.healthy and idle.reason.startswith("idle: consume_events t/g pid "), idle.reason


def test_evaluate__require_partitions_does_not_apply_to_a_worker_that_has_none_to_report(tmp_path):
    """relay_outbox (and a heartbeat from an older release) says nothing of partitions: the flag leaves it alone."""
    path = tmp_path / "alive"
    Heartbeat(path, "relay_outbox").beat(force=True)
    health = evaluate(path, 10, require_partitions=True)
    assert health.healthy and health.reason.endswith(" s ago"), health.reason
