"""Key-ordered parallel consumption with real consume_events processes, on either broker.

Each worker runs with ``--concurrency``; the test receiver logs every start and finish with the
thread it ran in, so the tests can tell that events overlapped, and in which order each key's
events ran. Event ``n`` has user id ``n`` and key course ``K(n % keys)``.
"""
from __future__ import annotations

import signal
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import pytest
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.receivers import read_log
from tests.support.kafka import committed, places, read_messages
from tests.support.workers import Worker

pytestmark = pytest.mark.integration


def produce_keyed(topic: str, count: int, keys: int) -> dict[int, str]:
    """Events 0..count-1 with ``keys`` distinct keys; returns event ids by number."""
    producer = create_producer()
    assert producer is not None
    ids = {}
    for number in range(count):
        metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
        data = enrollment_event_data(number, course=f"course-v1:edX+K{number % keys}+2026")
        producer.send(signal=ENROLLMENT_SIGNAL, topic=topic, event_key_field=ENROLLMENT_KEY_FIELD, event_data=data,
                      event_metadata=metadata)
        ids[number] = str(metadata.id)
    assert producer.prepare_for_shutdown(20) == 0
    return ids


def user(entry: dict[str, Any]) -> int:
    return int(entry["data"]["enrollment"]["user"]["id"])


def done(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in log if entry["phase"] == "done"]


def most_at_once(log: list[dict[str, Any]]) -> int:
    """The largest number of events running at the same time (from start/done entries in log order)."""
    running: set[tuple[str, int]] = set()
    most = 0
    for entry in log:
        (running.add if entry["phase"] == "start" else running.discard)((entry["id"], entry["attempt"]))
        most = max(most, len(running))
    return most


def new_topic(broker: Any, partitions: int) -> tuple[str, str]:
    topic, group = f"parallel-{uuid.uuid4().hex[:6]}", f"parallel-group-{uuid.uuid4().hex[:6]}"
    broker.create_topics([topic], partitions=partitions)
    return topic, group


def test_concurrency__events_overlap_and_each_key_keeps_its_order(bus_settings, kafka_broker, tmp_path):
    """300 events, 12 keys, 8 threads, random receiver times: events overlap, per-key order holds, each once."""
    topic, group = new_topic(kafka_broker, 2)
    ids = produce_keyed(topic, 300, keys=12)
    worker = Worker.consume_events(tmp_path, kafka_broker.bootstrap_servers, topic, group, "--concurrency", "8",
                                   mode="sleep_random:0.03").start()
    try:
        worker.wait_for_entries(lambda e: len(done(e)) >= 300, timeout=120)
        wait_for(lambda: sum(committed(kafka_broker.bootstrap_servers, group, topic, 2).values()) == 300,
                 timeout=30, what="the whole topic committed")
    finally:
        assert worker.stop() == 0, worker.output()
    log = worker.entries()
    assert sorted(e["id"] for e in done(log)) == sorted(ids.values())  # each exactly once
    assert most_at_once(log) > 1 and len({e["thread"] for e in done(log)}) > 1
    by_key: dict[int, list[int]] = defaultdict(list)
    for entry in done(log):
        by_key[user(entry) % 12].append(user(entry))
    for key, numbers in by_key.items():
        assert numbers == sorted(numbers), (key, numbers)  # same partition per key: offset order


def test_done_frontier__a_slow_early_message_holds_the_committed_offset_back(bus_settings, kafka_broker, tmp_path):
    """Event 0 takes 6 s, the 19 others are quick: they finish first, yet nothing is committed past event 0."""
    topic, group = new_topic(kafka_broker, 1)
    ids = produce_keyed(topic, 20, keys=20)
    bootstrap = kafka_broker.bootstrap_servers
    where = places(bootstrap, topic, 20)
    worker = Worker.consume_events(tmp_path, bootstrap, topic, group, "--concurrency", "4",
                                   mode="sleep_user:0:6").start()
    try:
        worker.wait_for_entries(lambda e: {user(x) for x in done(e)} >= set(range(1, 20)), timeout=60)
        assert ids[0] not in {e["id"] for e in worker.entries("done")}, "event 0 finished too soon to test"
        assert committed(bootstrap, group, topic, 1)[0] <= where[ids[0]][1]  # held back at event 0
        worker.wait_for_entries(lambda e: ids[0] in {x["id"] for x in done(e)}, timeout=30)
        wait_for(lambda: committed(bootstrap, group, topic, 1)[0] == 20, timeout=30, what="the frontier to move")
    finally:
        assert worker.stop() == 0, worker.output()


def test_kill_9_with_messages_in_flight__exactly_the_uncommitted_ones_are_redelivered(
    bus_settings, kafka_broker, tmp_path,
):
    """Kill -9 mid-stream: the restarted worker processes exactly the offsets from the committed one on."""
    topic, group = new_topic(kafka_broker, 1)
    ids = produce_keyed(topic, 150, keys=40)
    bootstrap = kafka_broker.bootstrap_servers
    where = places(bootstrap, topic, 150)
    first = Worker.consume_events(tmp_path, bootstrap, topic, group, "--concurrency", "8", mode="sleep:0.05",
                                  name="first", log_path=tmp_path / "first.jsonl").start()
    first.wait_for_entries(lambda e: len(done(e)) >= 40, timeout=60)
    first.signal(signal.SIGKILL)
    first.wait(10)
    at_kill = committed(bootstrap, group, topic, 1)[0]
    second = Worker.consume_events(tmp_path, bootstrap, topic, group, "--concurrency", "8", name="second",
                                   log_path=tmp_path / "second.jsonl").start()
    try:
        second.wait_for_entries(lambda e: {x["id"] for x in done(e)} | {x["id"] for x in first.entries("done")}
                                >= set(ids.values()), timeout=90, what="every event processed")
    finally:
        assert second.stop() == 0, second.output()
    again = {where[e["id"]][1] for e in second.entries("done")}
    assert again == set(range(max(at_kill, 0), 150)), (at_kill, sorted(again)[:5])
    first_done = {e["id"] for e in first.entries("done")}
    assert first_done | {e["id"] for e in second.entries("done")} == set(ids.values())  # none lost


def test_sigterm__running_messages_finish_then_the_worker_exits_0(bus_settings, kafka_broker, tmp_path):
    """SIGTERM with four 1-second messages running: each of them finishes and is committed; exit 0."""
    topic, group = new_topic(kafka_broker, 1)
    produce_keyed(topic, 40, keys=40)
    bootstrap = kafka_broker.bootstrap_servers
    worker = Worker.consume_events(tmp_path, bootstrap, topic, group, "--concurrency", "4", mode="sleep:1").start()
    worker.wait_for_entries(lambda e: sum(x["phase"] == "start" for x in e) >= 4, timeout=60)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    log = worker.entries()
    started = {(e["id"], e["attempt"]) for e in log if e["phase"] == "start"}
    finished = {(e["id"], e["attempt"]) for e in done(log)}
    assert started == finished  # drained: nothing abandoned half-way
    assert committed(bootstrap, group, topic, 1)[0] == len(finished)  # one partition, offset order


def first_revocation(output: str) -> float:
    """When a worker logged its first revocation (epoch seconds, from the log line's local timestamp)."""
    line = next(line for line in output.splitlines() if "Revoked partitions" in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()


def test_rebalance_while_in_flight__nothing_lost_and_only_uncommitted_messages_again(
    bus_settings, kafka_broker, tmp_path,
):
    """A second worker joins while the first has messages running: every event processed, none lost.

    A message runs twice only if it was done above its partition's frontier at the revocation (an
    earlier message of its partition was not done yet): queued messages of a revoked partition are
    not started, so the frontier cannot pass them.
    """
    topic, group = new_topic(kafka_broker, 3)
    ids = produce_keyed(topic, 240, keys=30)
    bootstrap = kafka_broker.bootstrap_servers
    log = tmp_path / "received.jsonl"
    one = Worker.consume_events(tmp_path, bootstrap, topic, group, "--concurrency", "4", mode="sleep:0.05",
                                name="one", log_path=log).start()
    workers = [one]
    try:
        one.wait_for_entries(lambda e: len(done(e)) >= 30, timeout=60)
        workers.append(Worker.consume_events(tmp_path, bootstrap, topic, group, "--concurrency", "4",
                                             mode="sleep:0.05", name="two", log_path=log).start())
        wait_for(lambda: {e["id"] for e in done(read_log(str(log)))} >= set(ids.values()), timeout=120,
                 what="every event processed")
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], [w.output()[-2000:] for w in workers]
    entries = done(read_log(str(log)))
    assert {e["id"] for e in entries} == set(ids.values())  # nothing lost
    assert len({e["pid"] for e in entries}) == 2
    revoked_at = first_revocation(one.output())
    where = places(bootstrap, topic, 240)
    first_done: dict[tuple[int, int], float] = {}
    for entry in entries:
        first_done.setdefault(where[entry["id"]], entry["time"])
    counts: dict[str, int] = defaultdict(int)
    for entry in entries:
        counts[entry["id"]] += 1
    for event_id in (event_id for event_id, count in counts.items() if count > 1):
        partition, offset = where[event_id]
        assert first_done[(partition, offset)] < revoked_at, "a message done after the revocation ran twice"
        held_back = [earlier for earlier in range(offset) if first_done.get((partition, earlier), 0) >= revoked_at]
        assert held_back, f"offset {offset} of partition {partition} ran twice though it was below the frontier"


@pytest.mark.parametrize(("mode", "dead_letters"), [("fail_first:2", 0), ("always_fail", 30)])
def test_retries_and_dead_letters_under_concurrency(bus_settings, kafka_broker, tmp_path, mode, dead_letters):
    """Failing receivers are retried per message and dead-lettered when they keep failing, with 4 threads."""
    topic, group = new_topic(kafka_broker, 1)
    ids = produce_keyed(topic, 30, keys=10)
    bootstrap = kafka_broker.bootstrap_servers
    worker = Worker.consume_events(tmp_path, bootstrap, topic, group, "--concurrency", "4", mode=mode).start()
    try:
        wait_for(lambda: committed(bootstrap, group, topic, 1)[0] == 30, timeout=90, what="every event settled")
    finally:
        assert worker.stop() == 0, worker.output()
    attempts: dict[str, int] = defaultdict(int)
    for entry in worker.entries("start"):
        attempts[entry["id"]] += 1
    assert set(attempts) == set(ids.values())
    assert all(count == 3 for count in attempts.values()), attempts  # 2 failures + success, or 3 attempts
    letters = read_messages(bootstrap, f"{topic}-{group}-dead-letter", dead_letters + 1, timeout=5 if not
                            dead_letters else 30)
    assert len(letters) == dead_letters
