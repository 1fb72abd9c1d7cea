"""reset_event_bus_offsets on a real broker: the plan, each target, the refusal of an active group, exit statuses.

Two things need Apache Kafka and are marked ``apache_kafka``: looking offsets up by time (Tansu
answers every ListOffsets-by-time request with offset 0) and naming an active group's members
(Tansu's DescribeGroups answer lists none, though it reports the group ``STABLE`` and refuses the
commit). Tansu also drops commit metadata, so keeping it is proved on Apache Kafka only.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from django.core.management import CommandError, call_command

from edx_event_bus_kafka.internal.errors import OffsetResetError
from edx_event_bus_kafka.internal.operations.offset_reset import ResetTarget, execute_reset, plan_reset
from edx_event_bus_kafka.testing import fast_consumer_config, free_loopback_port, wait_for
from tests.support.workers import ROOT

pytestmark = pytest.mark.integration

# Message n of each partition has timestamp BASE_MS + n s: an hour ago, on a whole second (recent enough
# for any retention, old enough to be "the past").
BASE_MS = (int(time.time()) - 3600) * 1000
PER_PARTITION = 5
MARKER = "kept-by-reset"


def produce_history(bootstrap: str, topic: str, partitions: int) -> None:
    """``PER_PARTITION`` messages on each partition, each in its own record batch (so end offsets are exact)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 0})
    for number in range(PER_PARTITION):
        for partition in range(partitions):
            producer.produce(topic, value=b"x", partition=partition, timestamp=BASE_MS + number * 1000)
            assert producer.flush(10) == 0


def commit(bootstrap: str, group: str, offsets: list[Any]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    consumer.commit(offsets=offsets, asynchronous=False)
    consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int | None, str | None]]:
    """The group's committed (offset, metadata) per partition; offset None when nothing is committed."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        found = consumer.committed([TopicPartition(topic, n) for n in range(3)], timeout=10)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None, tp.metadata or None) for tp in found}
    finally:
        consumer.close()


def offsets_of(state: dict[int, tuple[int | None, str | None]]) -> dict[int, int | None]:
    return {partition: offset for partition, (offset, _metadata) in state.items()}


class Group:
    """A topic (3 partitions, ``PER_PARTITION`` messages each) under a prefix, and a group at 4 / 2 / none."""

    def __init__(self, bootstrap: str, prefix: str, base_topic: str):
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.base_topic = base_topic
        self.topic = f"{prefix}-{base_topic}"
        self.name = f"reset-group-{uuid.uuid4().hex[:6]}"

    def run(self, *args: str) -> dict[str, Any]:
        """The command run in this process with ``--json``, its report."""
        out = io.StringIO()
        call_command("reset_event_bus_offsets", "-t", self.base_topic, "-g", self.name, "--json", *args, stdout=out)
        return json.loads(out.getvalue())

    def table(self, *args: str) -> str:
        out = io.StringIO()
        call_command("reset_event_bus_offsets", "-t", self.base_topic, "-g", self.name, *args, stdout=out)
        return out.getvalue()

    def process(self, *args: str, bootstrap: str | None = None) -> subprocess.CompletedProcess[str]:
        """The command as a real process."""
        env = {**os.environ, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap or self.bootstrap,
               "EVENT_BUS_TOPIC_PREFIX": self.prefix}
        return subprocess.run([sys.executable, "manage.py", "reset_event_bus_offsets", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=90, check=False)

    def committed(self) -> dict[int, tuple[int | None, str | None]]:
        return committed(self.bootstrap, self.name, self.topic)


@pytest.fixture
def group(bus_settings, kafka_broker) -> Group:
    """The group has committed offset 4 (with metadata) on partition 0, 2 on partition 1 and nothing on 2."""
    prefix = f"reset-{uuid.uuid4().hex[:6]}"
    bus_settings.EVENT_BUS_TOPIC_PREFIX = prefix
    found = Group(kafka_broker.bootstrap_servers, prefix, "enrollments")
    kafka_broker.create_topics([found.topic], partitions=3)
    produce_history(found.bootstrap, found.topic, 3)
    commit(found.bootstrap, found.name, [TopicPartition(found.topic, 0, 4, MARKER), TopicPartition(found.topic, 1, 2)])
    return found


@pytest.fixture
def member(group: Group, kafka_broker) -> Iterator[Consumer]:
    """An active member of the group (client id ``reset-test-worker``) holding all three partitions."""
    consumer = Consumer({**fast_consumer_config(), "bootstrap.servers": group.bootstrap, "group.id": group.name,
                         "client.id": "reset-test-worker", "log_level": 0})
    consumer.subscribe([group.topic])

    def assigned() -> bool:
        consumer.poll(0.1)
        return len(consumer.assignment()) == 3

    wait_for(assigned, timeout=30, what="the member's assignment")
    try:
        yield consumer
    finally:
        consumer.close()


def test_reset__dry_run_is_the_default_prints_the_plan_and_changes_nothing(group):
    """Without --execute the table shows committed, new, end and lag after per partition; nothing moves."""
    before = group.committed()
    text = group.table("--to-earliest")
    lines = text.splitlines()
    assert lines[0] == f"Topic {group.topic}, group {group.name}: to the earliest offset"
    assert lines[1].split() == ["PARTITION", "CURRENT", "NEW", "END", "LAG", "AFTER", "NOTE"]
    assert [line.split() for line in lines[2:5]] == [["0", "4", "0", "5", "5"], ["1", "2", "0", "5", "5"],
                                                     ["2", "-", "0", "5", "5"]]
    assert "Total lag after: 15" in text
    assert "Dry run: nothing changed; add --execute to move the group." in text
    assert group.run("--to-latest", "--dry-run")["executed"] is False
    assert group.committed() == before


@pytest.mark.parametrize(("args", "expected"), [
    (["--to-earliest"], {0: 0, 1: 0, 2: 0}),
    (["--to-latest"], {0: 5, 1: 5, 2: 5}),
    (["--shift-by", "-3"], {0: 1, 1: 0, 2: 0}),
    (["--shift-by", "2", "--partition", "1"], {0: 4, 1: 4, 2: None}),
    (["--to-offset", "3", "--partition", "0", "--partition", "2"], {0: 3, 1: 2, 2: 3}),
], ids=["earliest", "latest", "shift-back", "shift-one-partition", "offset-two-partitions"])
def test_reset__execute_moves_the_chosen_partitions_to_the_target(group, args, expected):
    """--execute commits each target's offsets on the chosen partitions only, and reports the lag after."""
    report = group.run(*args, "--execute")
    assert report["executed"] is True and report["active"] is False
    assert offsets_of(group.committed()) == expected
    planned = {row["partition"]: row for row in report["partitions"]}
    assert {number: row["new"] for number, row in planned.items()} == {
        number: offset for number, offset in expected.items() if number in planned}
    assert report["total_lag_after"] == sum(PER_PARTITION - row["new"] for row in planned.values())


def test_reset__targets_outside_the_partition_are_brought_within_it_with_a_note(group):
    """An offset past the end goes to the end; a shift from no commit starts where the group would start."""
    past = {row["partition"]: row for row in group.run("--to-offset", "99")["partitions"]}
    assert {number: row["new"] for number, row in past.items()} == {0: 5, 1: 5, 2: 5}
    assert past[0]["note"] == "99 is past the end: moved to the end"
    shifted = {row["partition"]: row for row in group.run("--shift-by", "2")["partitions"]}
    assert {number: row["new"] for number, row in shifted.items()} == {0: 5, 1: 4, 2: 2}
    assert shifted[0]["note"] == "6 is past the end: moved to the end"
    assert shifted[2]["note"] == "no commit: shifted from the earliest (auto.offset.reset)"


@pytest.mark.apache_kafka
def test_reset__to_datetime_moves_to_the_first_message_at_or_after_the_time(group):
    """--to-datetime finds each partition's first message at or after the time; after the last one: the end."""
    when = datetime.fromtimestamp((BASE_MS + 2500) / 1000, tz=UTC)
    report = group.run("--to-datetime", when.isoformat().replace("+00:00", "Z"), "--execute")
    assert report["target"]["value"] == when.isoformat()
    assert offsets_of(group.committed()) == {0: 3, 1: 3, 2: 3}
    after_all = datetime.fromtimestamp((BASE_MS + PER_PARTITION * 1000) / 1000, tz=UTC)
    later = group.run("--to-datetime", after_all.isoformat())
    assert [(row["new"], row["note"]) for row in later["partitions"]] == [
        (5, "no message at or after that time: moved to the end")] * 3


@pytest.mark.apache_kafka
def test_reset__keeps_each_partitions_commit_metadata(group):
    """Moving an offset keeps the metadata committed with it (a worker's replay marker survives a reset)."""
    group.run("--to-earliest", "--execute")
    assert group.committed()[0] == (0, MARKER)


def test_reset__execute_refuses_while_the_group_is_active(group, member):
    """With a member in the group, --execute exits 1 and moves nothing; the dry run warns and exits 0."""
    before = group.committed()
    refused = group.process("-t", group.base_topic, "-g", group.name, "--to-earliest", "--execute")
    assert refused.returncode == 1, refused.stderr
    assert f"CommandError: Refusing to move the offsets: group {group.name!r}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert group.committed() == before
    planned = group.process("-t", group.base_topic, "-g", group.name, "--to-earliest")
    assert planned.returncode == 0, planned.stderr
    assert "--execute refuses until then" in planned.stdout


def test_reset__a_member_joining_after_the_plan_is_refused_by_the_broker_and_reported(group, request):
    """If a worker joins between plan and execute, the broker refuses the commit and the error says why."""
    plan = plan_reset(group.base_topic, group.name, ResetTarget("earliest"))
    assert not plan.active
    before = group.committed()
    request.getfixturevalue("member")
    with pytest.raises(OffsetResetError, match="a worker joined the group meanwhile: stop it and try again"):
        execute_reset(plan)
    assert group.committed() == before


@pytest.mark.apache_kafka
def test_reset__refusal_names_each_member_its_client_host_and_partitions(group, member):
    """The refusal names the active member: member id, client id, host and its assigned partitions."""
    with pytest.raises(CommandError, match="has 1 active member") as raised:
        group.run("--to-earliest", "--execute")
    message = str(raised.value)
    member_id = member.memberid()
    assert member_id and f"member_id={member_id} client_id=reset-test-worker host=/127.0.0.1 " in message
    assert f"partitions={group.topic}:0,{group.topic}:1,{group.topic}:2" in message
    member.close()
    assert group.run("--to-earliest", "--execute")["executed"] is True  # once the member has left


def test_reset__bad_arguments_exit_2_naming_the_problem(group):
    """No target, two targets, a time without timezone or a negative offset: exit 2 before any broker call."""
    cases = [
        ([], "one of the arguments --to-datetime --to-earliest --to-latest --shift-by --to-offset is required"),
        (["--to-earliest", "--to-latest"], "argument --to-latest: not allowed with argument --to-earliest"),
        (["--to-datetime", "2026-11-28T09:00:00"], "'2026-11-28T09:00:00' is not an ISO 8601 date-time with a "
                                                   "timezone"),
        (["--to-offset", "-1", "--execute", "--dry-run"], "'-1' is not a whole number >= 0"),
    ]
    nowhere = f"127.0.0.1:{free_loopback_port()}"  # nothing listens: the arguments are refused first
    for args, expected in cases:
        done = group.process("-t", group.base_topic, "-g", group.name, *args, bootstrap=nowhere)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr.splitlines()[-1], (args, done.stderr)


def test_reset__what_cannot_be_done_exits_1_with_one_clear_line(group):
    """An unknown topic or partition, or an unreachable broker (within --timeout), is one CommandError line."""
    unknown = group.process("-t", "no-such-topic", "-g", group.name, "--to-earliest")
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines()[-1] == f"CommandError: topic '{group.prefix}-no-such-topic' does not exist"
    partition = group.process("-t", group.base_topic, "-g", group.name, "--to-earliest", "--partition", "7")
    assert partition.returncode == 1
    assert partition.stderr.splitlines()[-1] == (f"CommandError: topic '{group.topic}' has no partition 7 "
                                                 "(it has partitions 0-2)")
    nowhere = f"127.0.0.1:{free_loopback_port()}"
    started = time.monotonic()
    unreachable = group.process("-t", group.base_topic, "-g", group.name, "--to-earliest", "--timeout", "1",
                                bootstrap=nowhere)
    assert unreachable.returncode == 1
    assert unreachable.stderr.splitlines()[-1].startswith(
        f"CommandError: could not reach the brokers at {nowhere} within 1 s")
    assert "Traceback" not in unreachable.stderr
    assert time.monotonic() - started < 30  # Django's start-up and a 1 s timeout, not librdkafka's minute
