"""redrive_dead_letters as an operator runs it, on a real broker with real workers; and a copy the broker refuses.

Selection, listing, who processes copies, and the failure paths are tested on the in-memory Kafka
in tests/unit/test_dead_letters.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.dead_letters.letters import DeadLetter, read_dead_letters
from edx_event_bus_kafka.internal.dead_letters.redrive import redrive
from edx_event_bus_kafka.internal.dead_letters.writer import REDRIVE_GROUP
from edx_event_bus_kafka.internal.errors import RepublishError
from edx_event_bus_kafka.internal.kafka.reader import read_topic
from edx_event_bus_kafka.testing import wait_for
from tests.support.producing import produce
from tests.support.workers import ROOT, Worker, fast_worker_settings

pytestmark = pytest.mark.integration





def group_name() -> str:
    return f"group-{uuid.uuid4().hex[:8]}"


def header(message, name: str) -> str | None:
    values = [value.decode() for key, value in message.headers() or () if key == name]
    return values[0] if values else None


def redriven_copies(topic: str) -> list:
    """Messages of ``topic`` that redrive re-published (they carry the redrive header)."""
    return [message for message in read_topic(topic) if header(message, REDRIVE_GROUP) is not None]


def committed_past_everything(bootstrap: str, group: str, topic: str) -> bool:
    """Whether ``group`` committed past the last message of every non-empty partition of ``topic``."""
    ends: dict[int, int] = {}
    for message in read_topic(topic):
        ends[int(message.partition() or 0)] = int(message.offset() or 0) + 1
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in ends],
                                                                          timeout=10)}
    finally:
        consumer.close()
    return bool(ends) and all(committed[p] == end for p, end in ends.items())


def dead_letter_all(tmp_path, bootstrap: str, topic: str, group: str, count: int) -> list[EventsMetadata]:
    """Produce ``count`` events and have ``group`` dead-letter every one of them, then stop its worker."""
    sent = produce(topic, count)
    worker = Worker.consume_events(tmp_path, bootstrap, topic, group, mode="always_fail", name=f"failing-{group}",
                                   log_path=tmp_path / f"failing-{group}.jsonl",
                                   settings={"EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS": 1}).start()
    try:
        wait_for(lambda: len(read_dead_letters(topic, group)) == count, timeout=30, what="every event dead-lettered")
    finally:
        assert worker.stop() == 0, worker.output()
    return sent


def run_redrive(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py redrive_dead_letters ...`` as a real process, as an operator runs it."""
    env = {**os.environ, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "EVENT_BUS_SETTINGS_JSON": json.dumps(fast_worker_settings())}
    env.pop("TEST_RECEIVER_LOG", None)
    return subprocess.run([sys.executable, "manage.py", "redrive_dead_letters", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_redrive__lists_dry_runs_and_republishes_one_event_for_its_group(bus_settings, kafka_topic, tmp_path):
    """--list shows dead letters, --dry-run sends nothing, --event-id re-publishes one copy the group then processes."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    chosen, other = (str(m.id) for m in dead_letter_all(tmp_path, bootstrap, kafka_topic, group, 2))
    originals = read_topic(kafka_topic)
    assert len(originals) == 2

    listing = run_redrive(bootstrap, "-t", kafka_topic, "-g", group, "--list")
    assert listing.returncode == 0, listing.stderr
    assert chosen in listing.stdout and other in listing.stdout
    # The receiver's own exception, not our wrapper: before, the column read ReceiverError and was cut short.
    assert "tests.receivers.ReceiverFailure" in listing.stdout and "ReceiverError" not in listing.stdout, listing.stdout
    assert "tests.receivers.record_event: ReceiverFailure: always failing" in listing.stdout, listing.stdout
    assert "2 dead letters of group" in listing.stdout

    dry = run_redrive(bootstrap, "-t", kafka_topic, "-g", group, "--dry-run", "--event-id", chosen)
    assert dry.returncode == 0, dry.stderr
    assert f"Dry run: would re-publish 1 dead letter to {kafka_topic} for group {group}" in dry.stdout
    assert len(read_topic(kafka_topic)) == 2, "a dry run re-published something"

    real = run_redrive(bootstrap, "-t", kafka_topic, "-g", group, "--event-id", chosen)
    assert real.returncode == 0, real.stderr
    assert f"Re-published 1 dead letter to {kafka_topic} for group {group}" in real.stdout
    (copy,) = redriven_copies(kafka_topic)
    (original,) = [m for m in originals if header(m, "ce_id") == chosen]
    assert (copy.key(), copy.value()) == (original.key(), original.value())
    assert copy.headers() == [*original.headers(), (REDRIVE_GROUP, group.encode())]

    worker = Worker.consume_events(tmp_path, bootstrap, kafka_topic, group, name="second",
                                   log_path=tmp_path / "second.jsonl").start()
    try:
        worker.wait_for_entries(lambda entries: any(e["phase"] == "done" for e in entries))
        wait_for(lambda: committed_past_everything(bootstrap, group, kafka_topic), timeout=15, what="copy committed")
    finally:
        assert worker.stop() == 0, worker.output()
    assert [(e["id"], e["phase"]) for e in worker.entries()] == [(chosen, "start"), (chosen, "done")]


def test_redrive__a_copy_the_broker_refuses__raises_naming_it_and_counts_the_rest(bus_settings, kafka_topic):
    """A copy the broker refuses makes redrive raise RepublishError naming that copy; the other is delivered.

    Only the structure is asserted (which copy, how many delivered): the refusal's wording is the broker's.
    """
    group = group_name()

    def letter(event_id: str, topic: str) -> DeadLetter:
        return DeadLetter(partition=0, offset=len(event_id), key=b"key", value=b"value",
                          headers=[("ce_id", event_id.encode())], provenance={"original_topic": topic, "group": group})

    with pytest.raises(RepublishError) as raised:
        redrive([letter("ok-id", kafka_topic), letter("refused-id", "not a valid topic!")], group)
    assert raised.value.delivered == 1
    assert [failed.event_id for failed, _reason in raised.value.failures] == ["refused-id"]
    assert str(raised.value).startswith("1 of 2 dead letters were not re-published (1 were): "
                                        "event refused-id (dead letter 0:10): ")
    assert [header(m, "ce_id") for m in redriven_copies(kafka_topic)] == ["ok-id"]
