"""event_bus_status on the in-memory Kafka: lag, the oldest unconsumed message, dead letters, the outbox, the inbox."""
from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from edx_event_bus_kafka.models import InboxEvent, OutboxEvent
from tests.events import ENROLLMENT_SIGNAL
from tests.support.memory_bus import encoded_event

BASE_MS = 1_795_000_000_000


@pytest.fixture
def known_state(bus):
    """6 messages on partition 0 of 3 with the group at offset 2, and 2 dead letters for the group."""
    topic, group = f"status-{uuid.uuid4().hex[:6]}", "status-group"
    bus.create_topic(topic, 3)
    for number in range(6):
        key, value, headers, _ = encoded_event(number)
        bus.send(topic, value, key=key, headers=headers, partition=0, timestamp_ms=BASE_MS + number * 1000)
    bus.commit(group, topic, 0, 2)
    for _ in range(2):
        bus.send(f"{topic}-{group}-dead-letter", b"letter", partition=0)
    return topic, group


def status(*args: str) -> str:
    out = io.StringIO()
    call_command("event_bus_status", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_status__lag_oldest_unconsumed_dead_letters_and_outbox(known_state):
    """The JSON report gives per-partition committed/end/lag, the oldest unconsumed time, dead letters, outbox."""
    topic, group = known_state
    for number in range(3):
        OutboxEvent.objects.create(topic=topic, event_type=ENROLLMENT_SIGNAL.event_type, event_key_field="k",
                                   event_id=f"id-{number}", event_data="{}", event_metadata="{}")
    report = json.loads(status("-t", topic, "-g", group, "--json"))
    by_partition = {p["partition"]: p for p in report["partitions"]}
    assert by_partition[0] == {
        "partition": 0, "committed": 2, "end": 6, "lag": 4,
        "oldest_unconsumed": datetime.fromtimestamp((BASE_MS + 2000) / 1000, tz=UTC).isoformat(),
    }
    assert by_partition[1] == {"partition": 1, "committed": None, "end": 0, "lag": 0, "oldest_unconsumed": None}
    assert report["total_lag"] == 4
    assert report["dead_letters"] == 2
    assert report["outbox"]["pending"] == 3 and report["outbox"]["failed"] == 0
    assert report["outbox"]["oldest_pending_age_sec"] >= 0


@pytest.mark.django_db
def test_status__table_output_is_readable(known_state):
    """Without --json the report is a table with a total and the dead-letter and outbox lines."""
    topic, group = known_state
    text = status("-t", topic, "-g", group)
    assert f"Topic {topic}, group {group}" in text
    assert "Total lag: 4" in text
    assert "Dead letters" in text and "2 messages" in text
    assert "Outbox: 0 pending" in text


def test_status__group_without_dead_letter_topic_and_unknown_topic(known_state, bus):
    """A group that never dead-lettered says so; an unknown topic is a command error naming it."""
    topic, _ = known_state
    report = json.loads(status("-t", topic, "-g", "fresh-group", "--json", "--no-outbox"))
    assert report["dead_letters"] is None and report["total_lag"] == 6 and report["outbox"] is None
    with pytest.raises(CommandError, match="topic 'no-such-topic' does not exist"):
        status("-t", "no-such-topic", "-g", "g", "--no-outbox")


def test_status__refusing_broker_is_a_command_error_saying_so(known_state, bus):
    """A broker refusing our credentials fails the command at once with the refusal's reason."""
    topic, group = known_state
    bus.refuse_connections()
    with pytest.raises(CommandError, match="Kafka refused the status reader: authentication failed"):
        status("-t", topic, "-g", group, "--no-outbox")


@pytest.mark.django_db
def test_status__shows_the_groups_inbox_size_and_oldest_row(known_state, settings):
    """With deduplication on, the report has the group's inbox rows, the table's rows and the oldest row's age."""
    topic, group = known_state
    settings.EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION = {group: True}
    for event_id, owner, hours in (("a", group, 5), ("b", group, 1), ("c", "someone-else", 9)):
        InboxEvent.objects.create(consumer_group=owner, event_id=event_id, topic=topic, kafka_partition=0,
                                  kafka_offset=0, processed_at=timezone.now() - timedelta(hours=hours))
    inbox = json.loads(status("-t", topic, "-g", group, "--json"))["inbox"]
    assert (inbox["deduplication"], inbox["group_rows"], inbox["table_rows"]) == ("on", 2, 3)
    assert 5 * 3600 - 60 < inbox["oldest_age_sec"] < 5 * 3600 + 60
    table = status("-t", topic, "-g", group)
    assert "Inbox (deduplication on): 2 events remembered for this group, oldest processed 18" in table
    assert "; 3 rows in the table; retention 604800 s" in table
