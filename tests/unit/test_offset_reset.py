"""reset_event_bus_offsets on the in-memory Kafka: the plan, targets, kept commit metadata, the active-group refusal.

The real-broker and real-process tests (exit statuses, timeouts) are in tests/integration/test_reset_offsets.py.
"""
from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from edx_event_bus_kafka.internal.errors import OffsetResetError
from edx_event_bus_kafka.internal.operations.offset_reset import ResetTarget, execute_reset, plan_reset
from edx_event_bus_kafka.testing import wait_for
from edx_event_bus_kafka.testing.memory import InMemoryKafka

BASE_MS = 1_795_000_000_000
PER_PARTITION = 5
MARKER = "kept-by-reset"
TOPIC = "enrollments"


@pytest.fixture
def group(bus: InMemoryKafka) -> str:
    """``TOPIC`` with 3 partitions of 5 messages (message n at BASE_MS + n s); the group at 4 (marked), 2, none."""
    name = f"reset-group-{uuid.uuid4().hex[:6]}"
    bus.create_topic(TOPIC, 3)
    for number in range(PER_PARTITION):
        for partition in range(3):
            bus.send(TOPIC, b"x", partition=partition, timestamp_ms=BASE_MS + number * 1000)
    bus.commit(name, TOPIC, 0, 4, metadata=MARKER)
    bus.commit(name, TOPIC, 1, 2)
    return name


def run(group: str, *args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("reset_event_bus_offsets", "-t", TOPIC, "-g", group, "--json", *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def member(bus: InMemoryKafka, group: str) -> Iterator[Any]:
    """An active member of the group (client id ``reset-test-worker``) holding the three partitions."""
    consumer = bus.consumer({"group.id": group, "client.id": "reset-test-worker", "enable.auto.commit": False})
    consumer.subscribe([TOPIC])

    def assigned() -> bool:
        consumer.poll(0.01)
        return len(consumer.assignment()) == 3

    wait_for(assigned, timeout=5, what="the member's assignment")
    try:
        yield consumer
    finally:
        consumer.close()


def test_reset__dry_run_plans_and_changes_nothing(bus, group):
    """Without --execute the plan has committed, new, end and lag after per partition; nothing moves."""
    text = io.StringIO()
    call_command("reset_event_bus_offsets", "-t", TOPIC, "-g", group, "--to-earliest", stdout=text)
    rows = [line.split() for line in text.getvalue().splitlines()[2:5]]
    assert rows == [["0", "4", "0", "5", "5"], ["1", "2", "0", "5", "5"], ["2", "-", "0", "5", "5"]]
    assert "Dry run: nothing changed" in text.getvalue()
    assert bus.committed(group, TOPIC) == {0: 4, 1: 2}


@pytest.mark.parametrize(("args", "expected"), [
    (["--to-latest"], {0: 5, 1: 5, 2: 5}),
    (["--shift-by", "-3"], {0: 1, 1: 0, 2: 0}),
    (["--to-offset", "3", "--partition", "0", "--partition", "2"], {0: 3, 1: 2, 2: 3}),
], ids=["latest", "shift-back", "offset-two-partitions"])
def test_reset__execute_moves_the_chosen_partitions_and_keeps_commit_metadata(bus, group, args, expected):
    """--execute commits the new offsets of the chosen partitions only; each keeps its commit metadata."""
    report = run(group, *args, "--execute")
    assert report["executed"] is True and report["group_state"] == "EMPTY"
    assert bus.committed(group, TOPIC) == expected
    assert bus.commit_metadata_of(group, TOPIC) == {0: MARKER}


def test_reset__to_datetime_moves_to_the_first_message_at_or_after_the_time(bus, group):
    """--to-datetime finds each partition's first message at or after the time; after the last one: the end."""
    when = datetime.fromtimestamp((BASE_MS + 2500) / 1000, tz=UTC)
    run(group, "--to-datetime", when.isoformat(), "--execute")
    assert bus.committed(group, TOPIC) == {0: 3, 1: 3, 2: 3}
    after_all = datetime.fromtimestamp((BASE_MS + PER_PARTITION * 1000) / 1000, tz=UTC)
    assert [row["note"] for row in run(group, "--to-datetime", after_all.isoformat())["partitions"]] == [
        "no message at or after that time: moved to the end"] * 3


def test_reset__refusal_names_each_member_its_client_and_partitions(bus, group, member):
    """With a member in the group, --execute refuses, naming member id, client id and partitions; nothing moves."""
    with pytest.raises(CommandError, match="has 1 active member") as raised:
        run(group, "--to-earliest", "--execute")
    assert f"member_id={member.member_id} client_id=reset-test-worker " in str(raised.value)
    assert f"partitions={TOPIC}:0,{TOPIC}:1,{TOPIC}:2" in str(raised.value)
    assert bus.committed(group, TOPIC) == {0: 4, 1: 2}


def test_reset__a_member_joining_after_the_plan_is_refused_by_the_broker(bus, group, request):
    """A worker joining between plan and execute makes the broker refuse the commit; the error says why."""
    plan = plan_reset(TOPIC, group, ResetTarget("earliest"))
    assert not plan.active
    request.getfixturevalue("member")
    with pytest.raises(OffsetResetError, match="a worker joined the group meanwhile: stop it and try again"):
        execute_reset(plan)
    assert bus.committed(group, TOPIC) == {0: 4, 1: 2}


def test_reset__unknown_topic_partition_and_unreachable_broker_are_clear_errors(bus, group):
    """An unknown topic or partition, or a broker that is down, is one CommandError line."""
    with pytest.raises(CommandError, match="topic 'no-such-topic' does not exist"):
        call_command("reset_event_bus_offsets", "-t", "no-such-topic", "-g", group, "--to-earliest")
    with pytest.raises(CommandError, match=r"has no partition 7 \(it has partitions 0-2\)"):
        run(group, "--to-earliest", "--partition", "7")
    bus.go_down()
    with pytest.raises(CommandError, match=r"could not reach the brokers at \S+ within 1 s"):
        run(group, "--to-earliest", "--timeout", "1")
