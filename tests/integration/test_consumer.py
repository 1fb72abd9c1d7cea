"""consume_events as a real process on a real broker: delivery, a dead letter, SIGTERM, kill -9, groups, latency.

Retries, dead letters, commits and the error policy are tested on the in-memory Kafka in
tests/unit/test_consumer.py; these prove what needs the real process and broker.
"""
from __future__ import annotations

import signal
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from edx_event_bus_kafka.internal.wire.records import event_data_to_record
from edx_event_bus_kafka.testing import wait_for
from tests.support.kafka import read_messages
from tests.support.producing import event_data, produce
from tests.support.workers import Worker

pytestmark = pytest.mark.integration





def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int = 3) -> dict[int, int]:
    """The group's committed offset per partition (-1001 = none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Offset after the last message of each non-empty partition, from reading the messages.

    (The embedded broker's high watermark is the start of the last batch + 1, not the end.)
    """
    ends: dict[int, int] = {}
    for message in read_messages(bootstrap, topic, 10_000, timeout=3):
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)
    return ends


def fully_committed(bootstrap: str, group: str, topic: str) -> bool:
    """Whether the group committed past the last message of every partition."""
    ends = end_offsets(bootstrap, topic)
    committed = committed_offsets(bootstrap, group, topic)
    return bool(ends) and all(committed[p] == end for p, end in ends.items())


def group_name() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"


def test_consume_events__receivers_get_same_data_and_metadata(bus_settings, kafka_topic, tmp_path):
    """Events from our producer reach the receiver in another process with identical data and metadata."""
    sent = produce(kafka_topic, 5)
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group).start()
    try:
        entries = worker.wait_for_entries(lambda e: len([x for x in e if x["phase"] == "done"]) >= 5)
        wait_for(lambda: fully_committed(bootstrap, group, kafka_topic), timeout=15, what="offsets committed")
    finally:
        assert worker.stop() == 0, worker.output()
    done = {e["id"]: e for e in entries if e["phase"] == "done"}
    assert set(done) == {str(m.id) for m in sent}
    for number, metadata in enumerate(sent):
        entry = done[str(metadata.id)]
        assert entry["metadata"] == {**metadata.to_json_data(), "sourcelib": list(metadata.sourcelib)}
        assert entry["data"] == event_data_to_record(event_data(number))


def test_receiver_always_failing__dead_lettered_with_provenance_and_worker_goes_on(bus_settings, kafka_topic, tmp_path):
    """An always-failing event lands in the group's dead-letter topic with provenance; later events still flow."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    (failing,) = produce(kafka_topic, 1)
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, mode="always_fail",
                                   settings={"EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS": 2}).start()
    try:
        (dead,) = read_messages(bootstrap, f"{kafka_topic}-{group}-dead-letter", 1, timeout=30)
        wait_for(lambda: fully_committed(bootstrap, group, kafka_topic), timeout=15, what="offset committed")
        later = produce(kafka_topic, 2, start=10)
        worker.wait_for_entries(lambda e: {str(m.id) for m in later} <= {x["id"] for x in e})
    finally:
        assert worker.stop() == 0, worker.output()
    (original,) = read_messages(bootstrap, kafka_topic, 1)
    headers = dict(dead.headers())
    assert dead.key() == original.key() and dead.value() == original.value()
    assert dead.headers()[: len(original.headers())] == original.headers()
    assert headers["ce_id"] == str(failing.id).encode()
    assert headers["dead_letter_original_topic"] == kafka_topic.encode()
    assert headers["dead_letter_original_partition"] == str(original.partition()).encode()
    assert headers["dead_letter_original_offset"] == str(original.offset()).encode()
    assert headers["dead_letter_original_timestamp_ms"] == str(original.timestamp()[1]).encode()
    assert headers["dead_letter_group"] == group.encode()
    assert headers["dead_letter_error_class"] == b"tests.receivers.ReceiverFailure"  # the receiver's own exception
    assert headers["dead_letter_error_message"] == (
        f"tests.receivers.record_event: ReceiverFailure: always failing on {failing.id}".encode())
    trace = headers["dead_letter_error_traceback"].decode()
    assert trace.startswith("Traceback (most recent call last):") and 'in record_event' in trace, trace
    assert trace.rstrip().endswith(f"tests.receivers.ReceiverFailure: always failing on {failing.id}"), trace
    # Logged with its traceback on the first and the last attempt (an operator without APM sees where).
    traced = [line for line in worker.output().splitlines()
              if "Receiver traceback for " in line and f"event_id={failing.id}" in line]
    assert [line.rsplit("attempt=", 1)[1] for line in traced] == ["1:", "2:"], worker.output()
    assert headers["dead_letter_attempts"] == b"2"
    assert headers["dead_letter_time"].startswith(b"20")


def test_sigterm_during_processing__message_completes_commits_and_exits_zero(bus_settings, kafka_topic, tmp_path):
    """SIGTERM while a receiver runs: it finishes, the offset is committed, the worker exits 0."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    produce(kafka_topic, 1)
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, mode="sleep:2").start()
    worker.wait_for_entries(lambda e: any(x["phase"] == "start" for x in e))
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()
    assert len(worker.entries("done")) == 1
    assert fully_committed(bootstrap, group, kafka_topic)


def test_kill_9_mid_message__restarted_worker_processes_it_again(bus_settings, kafka_topic, tmp_path):
    """Kill -9 during processing loses nothing: the next worker in the group gets the message again."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    (metadata,) = produce(kafka_topic, 1)
    first = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, mode="sleep:30", name="first").start()
    first.wait_for_entries(lambda e: any(x["phase"] == "start" for x in e))
    first.signal(signal.SIGKILL)
    first.wait(10)
    second = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, name="second").start()
    try:
        second.wait_for_entries(lambda e: any(x["phase"] == "done" for x in e), timeout=40)
    finally:
        assert second.stop() == 0, second.output()
    starts = second.entries("start")
    assert [e["id"] for e in starts] == [str(metadata.id)] * 2
    assert len({e["pid"] for e in starts}) == 2


def test_two_workers_in_one_group__split_partitions_and_handle_each_event_once(bus_settings, kafka_topic, tmp_path):
    """Two workers share the three partitions; every event is handled exactly once by the group."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    workers = [Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, name=f"w{n}").start() for n in (1, 2)]
    try:
        # Both joined: each logs its assignment before we produce, so no rebalance re-delivers.
        wait_for(lambda: all(_assigned_count(w.output()) >= 1 for w in workers)
                 and sum(_assigned_count(w.output()) for w in workers) == 3,
                 timeout=30, what="both workers to be assigned partitions")
        sent = produce(kafka_topic, 30)
        workers[0].wait_for_entries(lambda e: len([x for x in e if x["phase"] == "done"]) >= 30)
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], [w.output() for w in workers]
    done = workers[0].entries("done")
    assert sorted(e["id"] for e in done) == sorted(str(m.id) for m in sent)
    assert len({e["pid"] for e in done}) == 2, "both workers handled events"


def _assigned_count(output: str) -> int:
    """How many partitions a worker consumes, from its most recent '... consuming partitions [..]' line."""
    lines = [line for line in output.splitlines() if "consuming partitions [" in line]
    if not lines:
        return 0
    listed = lines[-1].rsplit("consuming partitions [", 1)[1].split("]", 1)[0].strip()
    return len([p for p in listed.split(",") if p.strip()])


def test_low_traffic__a_lone_message_is_not_held_until_the_poll_timeout(bus_settings, kafka_topic, tmp_path):
    """With a 60 s poll timeout and a 500-message batch, one message still reaches the receiver at once."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group_name(), settings={
        "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": 60.0, "EVENT_BUS_KAFKA_CONSUMER_BATCH_SIZE": 500,
    }).start()
    try:
        wait_for(lambda: "Assigned partitions" in worker.output(), timeout=30, what="the group join")
        (metadata,) = produce(kafka_topic, 1)
        # Far less than the 60 s a batch-filling poll would wait: the message is not held back.
        worker.wait_for_entries(lambda e: any(x["phase"] == "done" for x in e), timeout=20)
    finally:
        assert worker.stop(timeout=20) == 0, worker.output()  # a stop does not wait out the poll either
    assert [e["id"] for e in worker.entries("done")] == [str(metadata.id)]


def test_event_type_filter__other_types_skipped_committed_and_counted(bus_settings, kafka_topic, tmp_path):
    """Only the requested type is emitted; the start line names it and the exit summary counts the rest."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = f"types-{uuid.uuid4().hex[:6]}"
    produce(kafka_topic, 3)  # enrollment events
    other = "org.openedx.learning.auth.session.login.completed.v1"
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, "--event-type", other).start()
    try:
        wait_for(lambda: sum(max(0, o) for o in committed_offsets(bootstrap, group, kafka_topic).values()) == 3,
                 timeout=40, what="the skipped messages' offsets to be committed")
    finally:
        assert worker.stop() == 0, worker.output()
    assert worker.entries() == []  # no receiver ran
    output = worker.output()
    assert f"Consuming only event types {other}" in output
    assert f"Skipped 3 messages of other event types than {other}" in output
    assert ", key=course-v1:edX+C0+2026, event_timestamp_ms=" in output  # audit lines show the decoded key


def test_worker_prints_a_start_banner_and_an_exit_summary_whatever_the_logging(bus_settings, kafka_topic, tmp_path):
    """Banner and summary go to stdout, not through logging; --log-level WARNING drops the INFO lines."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = f"banner-{uuid.uuid4().hex[:6]}"
    produce(kafka_topic, 2)
    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, "--log-level", "WARNING",
                                   mode="fail_first:1").start()
    try:
        worker.wait_for_entries(lambda e: sum(x["phase"] == "done" for x in e) == 2, timeout=40)
    finally:
        assert worker.stop() == 0, worker.output()
    lines = worker.output().splitlines()
    (banner,) = [line for line in lines if line.startswith("consume_events starting: ")]
    assert f"topic={kafka_topic} group={group} brokers={bootstrap} " in banner and "concurrency=1" in banner
    assert "event_types=all" in banner and "failure_policy=dead_letter" in banner
    (summary,) = [line for line in lines if line.startswith("consume_events stopped after ")]
    assert summary.endswith("(status 0): processed 2, retried 2, dead-lettered 0, skipped 0"), summary
    assert not any(" INFO " in line for line in lines), lines  # --log-level WARNING
