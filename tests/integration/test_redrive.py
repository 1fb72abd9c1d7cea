"""redrive_dead_letters against the embedded broker: listing, dry runs, selection, and who processes copies."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.core.management import CommandError, call_command
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.dead_letters.letters import DeadLetter, latest_per_event, read_dead_letters
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


def redrive_in_process(*args: str) -> str:
    """The command's output when run in this process (faster than a subprocess, same code)."""
    out = io.StringIO()
    call_command("redrive_dead_letters", *args, stdout=out)
    return out.getvalue()


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
    assert "ReceiverError" in listing.stdout and " receivers of " in listing.stdout, listing.stdout
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


def test_redriven_copy__is_skipped_by_other_groups(bus_settings, kafka_topic, tmp_path):
    """A group that handled the originals handles each event once: it skips the copy redriven for another group."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    failing_group, other_group = group_name(), group_name()
    # Started first so its group join overlaps the dead-lettering below.
    other = Worker.consume_events(tmp_path, bootstrap, kafka_topic, other_group, name="other",
                                  log_path=tmp_path / "other.jsonl").start()
    try:
        sent = {str(m.id) for m in dead_letter_all(tmp_path, bootstrap, kafka_topic, failing_group, 2)}
        chosen = sorted(sent)[0]
        output = redrive_in_process("-t", kafka_topic, "-g", failing_group, "--event-id", chosen)
        assert "Re-published 1 dead letter" in output
        assert len(redriven_copies(kafka_topic)) == 1
        wait_for(lambda: committed_past_everything(bootstrap, other_group, kafka_topic), timeout=20,
                 what="the other group to commit past the copy")
    finally:
        assert other.stop() == 0, other.output()
    done = [e["id"] for e in other.entries("done")]
    assert sorted(done) == sorted(sent), "each original once, and not the copy"
    assert len(other.entries("start")) == 2


def test_redrive__selects_by_partition_and_offsets_and_requires_a_selector_or_all(bus_settings, kafka_topic,
                                                                                    tmp_path):
    """--partition and --offsets pick dead letters by original position; no selector without --all is refused."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = group_name()
    dead_letter_all(tmp_path, bootstrap, kafka_topic, group, 5)
    letters = read_dead_letters(kafka_topic, group)
    by_partition = defaultdict(list)
    for letter in letters:
        by_partition[letter.original_partition].append(letter)
    # Five events on three partitions: one partition holds at least two.
    busiest, on_busiest = max(by_partition.items(), key=lambda item: len(item[1]))
    first, second = sorted(letter.original_offset for letter in on_busiest)[:2]

    def planned(*selectors: str) -> set[str]:
        output = redrive_in_process("-t", kafka_topic, "-g", group, "--dry-run", "--json", *selectors)
        report = json.loads(output)
        assert report["action"] == "dry_run" and report["republished"] == len(report["dead_letters"])
        return {entry["event_id"] for entry in report["dead_letters"]}

    assert planned("--partition", str(busiest), "--offsets", f"{second}-") == {
        letter.event_id for letter in on_busiest if letter.original_offset >= second
    }
    early = {letter.event_id for letter in letters if letter.original_offset <= first}
    assert planned("--offsets", f"0-{first}") == early
    assert planned("--all") == {letter.event_id for letter in letters}

    output = redrive_in_process("-t", kafka_topic, "-g", group, "--partition", str(busiest))
    assert f"Re-published {len(on_busiest)} dead letter" in output
    assert {header(m, "ce_id") for m in redriven_copies(kafka_topic)} == {letter.event_id for letter in on_busiest}

    refused = run_redrive(bootstrap, "-t", kafka_topic, "-g", group)
    assert refused.returncode != 0
    assert "without --all" in refused.stderr and "--event-id" in refused.stderr
    for bad, message in ((("--offsets", "9-2"), "ends before it starts"),
                         (("--partition", "-1"), "not a partition number"),
                         (("--all", "--partition", "1"), "cannot be combined"),
                         (("--event-id", "no-such-event"), "matches event id(s) no-such-event")):
        with pytest.raises(CommandError, match=re.escape(message)):
            redrive_in_process("-t", kafka_topic, "-g", group, *bad)
    assert len(redriven_copies(kafka_topic)) == len(on_busiest), "a refused redrive re-published something"


def test_read_dead_letters__group_without_dead_letter_topic__returns_empty_list_quickly(bus_settings, kafka_topic):
    """A group that never dead-lettered anything has no dead-letter topic: that reads as no dead letters."""
    started = time.monotonic()
    assert read_dead_letters(kafka_topic, group_name()) == []
    assert time.monotonic() - started < 2


def test_redrive__failed_delivery__raises_naming_it_and_counts_the_rest(bus_settings, kafka_topic):
    """A copy the broker refuses makes redrive raise RepublishError naming it; the other copy is delivered."""
    group = group_name()

    def letter(event_id: str, topic: str) -> DeadLetter:
        return DeadLetter(partition=0, offset=len(event_id), key=b"key", value=b"value",
                          headers=[("ce_id", event_id.encode())], provenance={"original_topic": topic, "group": group})

    with pytest.raises(RepublishError, match=r"1 of 2 .* event refused-id .*Invalid topic") as raised:
        redrive([letter("ok-id", kafka_topic), letter("refused-id", "not a valid topic!")], group)
    assert raised.value.delivered == 1
    assert [failed.event_id for failed, _reason in raised.value.failures] == ["refused-id"]
    assert [header(m, "ce_id") for m in redriven_copies(kafka_topic)] == ["ok-id"]


def test_latest_per_event__an_event_dead_lettered_twice_is_redriven_once():
    """An event redriven and dead-lettered again has two dead letters: only the later one is re-published."""
    def letter(event_id: str, offset: int, when: str) -> DeadLetter:
        return DeadLetter(partition=0, offset=offset, key=None, value=None, headers=[("ce_id", event_id.encode())],
                          provenance={"time": when})

    first = letter("a", 0, "2026-11-28T10:00:00")
    other = letter("b", 1, "2026-11-28T10:01:00")
    again = letter("a", 2, "2026-11-28T10:02:00")
    assert latest_per_event([first, other, again]) == [other, again]
