"""The inbox with real processes on PostgreSQL: one database effect per event through kills, crashes, races, redrives.

Workers are ``manage.py consume_events`` processes on a throw-away PostgreSQL server, with
``EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION`` on for their group and the ``record_effect`` receiver
(tests/receivers.py), which writes one ``EventEffect`` row per run: a duplicated effect shows as two
rows for one event id, a lost one as none. The test reads the rows with its own connection.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.dead_letters.letters import read_dead_letters
from edx_event_bus_kafka.internal.dead_letters.redrive import redrive
from edx_event_bus_kafka.internal.dead_letters.writer import REDRIVE_GROUP
from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import encoder_for
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL
from tests.support.databases import Database
from tests.support.kafka import read_messages
from tests.support.postgres import TemporaryPostgres
from tests.support.producing import event_data, produce
from tests.support.workers import ROOT, Worker

pytestmark = pytest.mark.integration

DUPLICATE_LINE = "Skipping duplicate event already processed by consumer group"


@pytest.fixture(scope="module")
def postgres():
    server = TemporaryPostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database(postgres):
    """A fresh migrated database for one test."""
    return Database(postgres, "inbox")


def group_name() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"


def dedup_worker(tmp_path: Path, bootstrap: str, topic: str, group: str, database: Database, *, effect: str = "ok",
                 name: str = "worker", mode: str = "ok", **settings: Any) -> Worker:
    """A consume_events process on ``database`` that deduplicates for ``group``; receivers log to one file."""
    worker = Worker.consume_events(
        tmp_path, bootstrap, topic, group, mode=mode, name=name, log_path=tmp_path / "received.jsonl",
        settings={"EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION": {group: True}, **settings},
    )
    worker.env.update({**database.env, "TEST_EFFECT_MODE": effect})
    return worker


def committed_to_the_end(bootstrap: str, group: str, messages: list) -> bool:
    """Whether ``group`` has committed past each of ``messages`` (all read from one topic)."""
    ends: dict[int, int] = {}
    for message in messages:
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)
    topic = messages[0].topic()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        found = consumer.committed([TopicPartition(topic, partition) for partition in ends], timeout=10)
    finally:
        consumer.close()
    return all(tp.offset >= ends[tp.partition] for tp in found)


def duplicates_logged(*workers: Worker) -> list[str]:
    return [line for worker in workers for line in worker.output().splitlines() if DUPLICATE_LINE in line]


def test_worker_killed_after_its_transaction_committed__restarted_worker_skips_the_redelivered_event(
    bus_settings, kafka_topic, database, tmp_path,
):
    """Kill -9 after the receivers' commit, before the offset commit: the event comes again and is skipped."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    (metadata,) = produce(kafka_topic, 1)
    event_id = str(metadata.id)
    first = dedup_worker(tmp_path, bootstrap, kafka_topic, group, database, effect="hang_after_commit",
                         name="first").start()
    first.wait_for_entries(lambda entries: any(e["phase"] == "committed" for e in entries), timeout=40,
                           what="the first worker's transaction to commit")
    first.signal(signal.SIGKILL)
    first.wait(10)
    assert database.effects() == {event_id: [1]}  # committed before the kill
    (message,) = read_messages(bootstrap, kafka_topic, 1)
    assert not committed_to_the_end(bootstrap, group, [message])  # ... but its offset was not

    second = dedup_worker(tmp_path, bootstrap, kafka_topic, group, database, name="second").start()
    try:
        wait_for(lambda: duplicates_logged(second), timeout=40, what="the restarted worker to skip the event")
        wait_for(lambda: committed_to_the_end(bootstrap, group, [message]), timeout=20, what="the offset commit")
    finally:
        assert second.stop() == 0, second.output()
    (line,) = duplicates_logged(second)
    assert f"event_id={event_id}" in line and f"'{group}'" in line and f"offset={message.offset()}" in line
    assert database.effects() == {event_id: [1]}
    assert database.inbox(group) == [event_id]
    assert [e["pid"] for e in second.entries("effect")] == [first.process.pid]  # the receiver ran once only


def test_outbox_to_inbox_across_two_services__relay_crash_duplicates_each_effect_exactly_once(
    kafka_broker, postgres, tmp_path,
):
    """Service A's outbox relay is killed between ack and mark and re-publishes; B's effects are each there once."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"inbox-e2e-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=3)
    service_a, service_b = Database(postgres, "service_a"), Database(postgres, "service_b")
    group = group_name()
    consumer = dedup_worker(tmp_path, bootstrap, topic, group, service_b, name="service-b").start()
    env_a = {**os.environ, **service_a.env, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
             "EVENT_BUS_SETTINGS_JSON": json.dumps({"EVENT_BUS_KAFKA_DELIVERY_MODE": "outbox",
                                                    "EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT": False,
                                                    "EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC": 0.1})}
    try:
        subprocess.run([sys.executable, "-m", "tests.support.outbox_script", "write", "--topic", topic, "--count",
                        "20", "--keys", "4"], cwd=ROOT, env=env_a, check=True, timeout=120, capture_output=True)
        crash_log = tmp_path / "crash-relay.out"
        with open(crash_log, "wb") as out:
            crashing = subprocess.Popen([sys.executable, "-m", "tests.support.outbox_script", "crash-relay"],
                                        cwd=ROOT, env=env_a, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: "acknowledged 20" in crash_log.read_text(), timeout=60, what="the batch to be acknowledged")
        crashing.send_signal(signal.SIGKILL)
        crashing.wait(10)
        pending = "SELECT count(*) FROM edx_event_bus_kafka_outboxevent WHERE status = 'pending'"
        assert service_a.rows(pending) == [(20,)]  # published, never marked
        relay_log = tmp_path / "relay.out"
        with open(relay_log, "wb") as out:
            relay = subprocess.Popen([sys.executable, "manage.py", "relay_outbox"], cwd=ROOT, env=env_a, stdout=out,
                                     stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: service_a.rows(pending) == [(0,)], timeout=60, what="the relay to re-publish")
        finally:
            relay.send_signal(signal.SIGTERM)
            assert relay.wait(30) == 0, relay_log.read_text()
        messages = read_messages(bootstrap, topic, 40)
        assert len(messages) == 40  # every event twice, with the same ce_id
        wait_for(lambda: committed_to_the_end(bootstrap, group, messages), timeout=60,
                 what="service B to consume every copy")
    finally:
        assert consumer.stop() == 0, consumer.output()
    sent = sorted(event_id for (event_id,) in service_a.rows("SELECT event_id FROM edx_event_bus_kafka_outboxevent"))
    assert len(sent) == 20
    assert service_b.effects() == {event_id: [1] for event_id in sent}  # none missing, none twice
    assert service_b.inbox(group) == sent
    assert len(duplicates_logged(consumer)) == 20


def test_receiver_error__effect_and_inbox_row_roll_back_and_the_retry_succeeds_once(
    bus_settings, kafka_topic, database, tmp_path,
):
    """A receiver failing after its write leaves nothing; the retry is not taken for a duplicate and commits once."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    (metadata,) = produce(kafka_topic, 1)
    event_id = str(metadata.id)
    worker = dedup_worker(tmp_path, bootstrap, kafka_topic, group, database, effect="fail_first:1").start()
    try:
        worker.wait_for_entries(lambda entries: len([e for e in entries if e["phase"] == "effect"]) == 2,
                                what="the failed attempt and the retry")
        (message,) = read_messages(bootstrap, kafka_topic, 1)
        wait_for(lambda: committed_to_the_end(bootstrap, group, [message]), timeout=20, what="the offset commit")
    finally:
        assert worker.stop() == 0, worker.output()
    assert [e["attempt"] for e in worker.entries("effect")] == [1, 2]
    assert database.effects() == {event_id: [2]}  # attempt 1's row was rolled back
    assert database.inbox(group) == [event_id]
    assert "decision=retry" in worker.output() and not duplicates_logged(worker)


def test_redrive_of_a_dead_letter__processed_once_and_a_second_redrive_is_skipped(
    bus_settings, kafka_topic, database, tmp_path,
):
    """A dead-lettered event left no effect nor inbox row, so its redrive is processed; redriving again is not."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    (metadata,) = produce(kafka_topic, 1)
    event_id = str(metadata.id)
    failing = dedup_worker(tmp_path, bootstrap, kafka_topic, group, database, mode="always_fail", name="failing",
                           EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS=1).start()
    try:
        wait_for(lambda: len(read_dead_letters(kafka_topic, group)) == 1, timeout=40, what="the dead letter")
    finally:
        assert failing.stop() == 0, failing.output()
    assert failing.entries("effect") and database.effects() == {} and database.inbox(group) == []

    (letter,) = read_dead_letters(kafka_topic, group)
    assert redrive([letter], group) == 1
    worker = dedup_worker(tmp_path, bootstrap, kafka_topic, group, database, name="fixed").start()
    try:
        wait_for(lambda: database.effects() == {event_id: [2]}, timeout=40, what="the re-driven copy's effect")
        assert redrive([letter], group) == 1
        wait_for(lambda: duplicates_logged(worker), timeout=30, what="the second copy to be skipped")
    finally:
        assert worker.stop() == 0, worker.output()
    assert database.effects() == {event_id: [2]} and database.inbox(group) == [event_id]


def assigned_partitions(output: str) -> list[int] | None:
    """The partitions a worker consumes now, from its last '... consuming partitions [..]' line."""
    lines = [line for line in output.splitlines() if "consuming partitions [" in line]
    if not lines:
        return None
    listed = lines[-1].rsplit("consuming partitions [", 1)[1].split("]", 1)[0]
    return sorted(int(part) for part in listed.split(",") if part.strip())


def waiting_inbox_inserts(database: Database) -> int:
    """Sessions of ``database`` whose insert into the inbox waits for another transaction's lock."""
    return int(database.rows(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
        "AND query LIKE %s", 'INSERT INTO "edx_event_bus_kafka_inboxevent"%')[0][0])


@pytest.mark.parametrize("layout", ["two workers", "one worker with four threads"])
def test_race_on_one_event__the_redriven_copy_waits_for_the_original_and_is_skipped(
    bus_settings, kafka_broker, database, tmp_path, layout,
):
    """A re-driven copy is processed while the original still is, by another worker or thread: one effect.

    The copy is put on the other partition, as happens when the topic gained partitions since the
    original was published. Two workers hold one partition each; with four threads (parallel
    consumption) the two partitions are two lanes, so two threads process the event at once.
    """
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    topic = f"inbox-race-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=2)
    group = group_name()
    release = tmp_path / "release"
    if layout == "two workers":
        workers = [dedup_worker(tmp_path, bootstrap, topic, group, database, effect=f"hold:{release}",
                                name=f"w{number}").start() for number in (1, 2)]
        expected = [(0,), (1,)]
    else:
        workers = [dedup_worker(tmp_path, bootstrap, topic, group, database, effect=f"hold:{release}",
                                EVENT_BUS_KAFKA_CONSUMER_CONCURRENCY=4).start()]
        expected = [(0, 1)]
    try:
        wait_for(lambda: sorted(tuple(assigned_partitions(w.output()) or ()) for w in workers) == expected,
                 timeout=40, what="the partitions to be assigned")
        metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
        key, value = encoder_for(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, topic).encode(event_data(1))
        headers: Any = headers_from_metadata(metadata)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 0})
        producer.produce(topic, key=key, value=value, headers=headers, partition=0)
        assert producer.flush(10) == 0
        workers[0].wait_for_entries(lambda entries: any(e["phase"] == "holding" for e in entries),
                                    what="the original to be inside its transaction")
        redriven = [*headers, (REDRIVE_GROUP, group.encode())]
        producer.produce(topic, key=key, value=value, headers=redriven, partition=1)
        assert producer.flush(10) == 0
        wait_for(lambda: waiting_inbox_inserts(database) == 1, timeout=30,
                 what="the copy's insert to wait for the original's transaction")
        release.touch()
        messages = read_messages(bootstrap, topic, 2)
        wait_for(lambda: committed_to_the_end(bootstrap, group, messages), timeout=30, what="both offsets committed")
    finally:
        release.touch()
        codes = [worker.stop() for worker in workers]
    assert codes == [0] * len(workers), [worker.output() for worker in workers]
    event_id = str(metadata.id)
    assert database.effects() == {event_id: [1]}
    assert len(workers[0].entries("holding")) == 1  # the copy's receivers never ran
    (line,) = duplicates_logged(*workers)
    assert f"event_id={event_id}" in line


def test_threads_with_their_own_connections__the_unique_constraint_decides(database):
    """Two threads of one process (as a parallel consumer's): the second waits for the first, then skips."""
    result = subprocess.run([sys.executable, "-m", "tests.support.inbox_script", "threads-race"], cwd=ROOT,
                            env={**os.environ, **database.env}, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"first": True, "second": False, "second_seen_waiting": True, "effect_attempts": [1]}
