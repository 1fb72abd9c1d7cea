"""Database outages under real workers: PostgreSQL stopped, restarted, and connections cut mid-stream.

A receiver that fails with Django's ``OperationalError`` / ``InterfaceError`` failed because of the
database, not because of the event: ``consume_events`` retries that message for as long as it
takes (beyond ``EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS``), reconnects once the server is back and
loses nothing. The relay waits the outage out the same way, and a web process writing outbox rows
with the database down logs the event and returns. Each test has its own PostgreSQL server, since
the tests stop it; the ``record_effect`` receiver writes one ``EventEffect`` row per processed event.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edx_event_bus_kafka.internal.dead_letters.letters import read_dead_letters
from edx_event_bus_kafka.testing import wait_for
from tests.support.databases import Database
from tests.support.kafka import read_messages
from tests.support.postgres import TemporaryPostgres
from tests.support.producing import produce
from tests.support.workers import ROOT, Worker

pytestmark = pytest.mark.integration

RETRY_LINE = "database unavailable"


@pytest.fixture
def postgres() -> Iterator[TemporaryPostgres]:
    """A PostgreSQL server of this test's own: the test stops and restarts it."""
    server = TemporaryPostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database(postgres: TemporaryPostgres) -> Database:
    return Database(postgres, "outage")


def effect_worker(tmp_path: Path, bootstrap: str, topic: str, database: Database, *, effect: str = "ok") -> Worker:
    """A consume_events process whose receiver writes to ``database``; two receiver attempts per event at most."""
    worker = Worker.consume_events(tmp_path, bootstrap, topic, f"group-{uuid.uuid4().hex[:8]}", settings={
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS": 2,
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_MAX_SEC": 0.5,
    })
    worker.env.update({**database.env, "TEST_EFFECT_MODE": effect})
    return worker


def group_of(worker: Worker) -> str:
    return worker.argv[worker.argv.index("-g") + 1]


def retries_logged(worker: Worker) -> list[str]:
    return [line for line in worker.output().splitlines() if RETRY_LINE in line]


def test_postgres_down_longer_than_the_retry_budget__events_retried_not_dead_lettered_none_lost(
    bus_settings, kafka_topic, postgres, database, tmp_path,
):
    """PostgreSQL stopped for far longer than two attempts take: the worker waits it out and loses nothing."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    before = produce(kafka_topic, 3)
    worker = effect_worker(tmp_path, bootstrap, kafka_topic, database).start()
    try:
        worker.wait_for_entries(lambda entries: sum(e["phase"] == "effect" for e in entries) == 3, timeout=40,
                                what="the first events' effects")
        postgres.stop_server()
        during = produce(kafka_topic, 3, start=3)
        # Many more failed attempts than the two the retry budget allows a receiver bug.
        wait_for(lambda: len(retries_logged(worker)) >= 6, timeout=40, what="the worker to retry through the outage")
        assert worker.process.poll() is None, worker.output()
        postgres.start_server()
        expected = {str(metadata.id) for metadata in before + during}
        wait_for(lambda: set(database.effects()) == expected, timeout=40, what="every event's effect")
    finally:
        assert worker.stop() == 0, worker.output()
    assert all(len(attempts) == 1 for attempts in database.effects().values()), database.effects()
    assert read_dead_letters(kafka_topic, group_of(worker), timeout=5) == []
    first = retries_logged(worker)[0]
    assert f"topic={kafka_topic}" in first or kafka_topic in first, first
    assert any(str(metadata.id) in first for metadata in during), first  # partitions go on in any order
    assert "Traceback" not in worker.output()


def test_connection_killed_mid_stream__worker_reconnects_and_every_event_has_one_effect(
    bus_settings, kafka_topic, postgres, database, tmp_path,
):
    """pg_terminate_backend while the receiver holds its connection: the next write fails, is retried, reconnects."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    go_on = tmp_path / "go-on"
    sent = produce(kafka_topic, 6)
    worker = effect_worker(tmp_path, bootstrap, kafka_topic, database, effect=f"hold:{go_on}").start()
    try:
        worker.wait_for_entries(lambda entries: any(e["phase"] == "holding" for e in entries), timeout=40,
                                what="the receiver to hold its connection")
        assert postgres.terminate_connections(database.name) >= 1
        go_on.touch()
        expected = {str(metadata.id) for metadata in sent}
        wait_for(lambda: set(database.effects()) == expected, timeout=40, what="every event's effect")
    finally:
        assert worker.stop() == 0, worker.output()
    assert all(len(attempts) == 1 for attempts in database.effects().values()), database.effects()
    assert retries_logged(worker), worker.output()  # the cut connection was noticed, and retried
    assert read_dead_letters(kafka_topic, group_of(worker), timeout=5) == []


def outbox_env(database: Database, bootstrap: str, **settings: object) -> dict[str, str]:
    return {**os.environ, **database.env, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "EVENT_BUS_SETTINGS_JSON": json.dumps({"EVENT_BUS_KAFKA_DELIVERY_MODE": "outbox",
                                                   "EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT": False,
                                                   "EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC": 0.1, **settings})}


def run_script(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.support.outbox_script", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def pending_rows(database: Database) -> int:
    (count,), = database.rows("SELECT count(*) FROM edx_event_bus_kafka_outboxevent WHERE status = %s", "pending")
    return int(count)


def test_relay_through_a_postgres_outage__keeps_running_and_publishes_every_row_once(
    kafka_broker, postgres, database, tmp_path,
):
    """The relay logs the outage, backs off, reconnects when the server is back and publishes what was written."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"relay-db-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=2)
    env = outbox_env(database, bootstrap)
    assert run_script(env, "write", "--topic", topic, "--count", "10", "--keys", "2").returncode == 0
    output = tmp_path / "relay.out"
    with open(output, "wb") as out:
        relay = subprocess.Popen([sys.executable, "manage.py", "relay_outbox"], cwd=ROOT, env=env, stdout=out,
                                 stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: pending_rows(database) == 0, timeout=60, what="the first rows to be published")
        postgres.stop_server()
        wait_for(lambda: "unavailable" in output.read_text(), timeout=30, what="the relay to report the outage")
        outage_began = time.monotonic()
        wait_for(lambda: time.monotonic() - outage_began > 2 or relay.poll() is not None, timeout=10,
                 what="a few seconds of outage")
        assert relay.poll() is None, output.read_text()
        postgres.start_server()
        assert run_script(env, "write", "--topic", topic, "--count", "10", "--keys", "2").returncode == 0
        wait_for(lambda: pending_rows(database) == 0, timeout=60, what="the rows written after the outage")
    finally:
        relay.send_signal(signal.SIGTERM)
        code = relay.wait(30)
    log = output.read_text()
    assert code == 0, log
    ids = [dict(message.headers())["ce_id"] for message in read_messages(bootstrap, topic, 21, timeout=10)]
    assert len(ids) == 20 and len(set(ids)) == 20
    (began,) = [line for line in log.splitlines() if "unavailable (OperationalError" in line]  # not once per back-off
    (ended,) = [line for line in log.splitlines() if "available again after" in line]
    assert "database 'default'" in began and "database 'default'" in ended, log
    assert any(line.startswith("relay_outbox starting: database=default brokers=") for line in log.splitlines())
    assert any(line.startswith("relay_outbox stopped after ") and line.endswith("(status 0): published 20 rows")
               for line in log.splitlines()), log
    assert "Traceback" not in log


def test_web_process_writing_to_the_outbox_with_postgres_down__logs_the_event_and_returns(
    kafka_broker, postgres, database,
):
    """send() in outbox mode with the database gone: the request goes on; the event is in the log to re-send."""
    env = outbox_env(database, kafka_broker.bootstrap_servers)
    postgres.stop_server()
    result = run_script(env, "send-one", "--topic", "web-topic")
    assert result.returncode == 0, result.stdout + result.stderr
    (returned,) = [line for line in result.stdout.splitlines() if line.startswith("returned;")]
    assert "outboxed=0 failed=1" in returned
    event_id = returned.split("event_id=")[1].split()[0]
    (logged,) = [line for line in result.stderr.splitlines() if "Error delivering message" in line]
    assert event_id in logged and "web-topic" in logged and "outbox" in logged, logged
