"""event_bus_status on a topic with known lag, dead letters and outbox rows."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from django.core.management import call_command
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import encoder_for
from edx_event_bus_kafka.models import OutboxEvent
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BASE_MS = 1_795_000_000_000


def produce_one_per_batch(bootstrap: str, topic: str, count: int, partition: int) -> None:
    """``count`` events, each in its own record batch (so the broker's end offset is exact)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 0})
    for number in range(count):
        key, value = encoder_for(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, topic).encode(enrollment_event_data(number))
        headers: Any = headers_from_metadata(EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type))
        producer.produce(topic, key=key, value=value, headers=headers, partition=partition,
                         timestamp=BASE_MS + number * 1000)
        assert producer.flush(10) == 0


def commit(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    consumer.close()


@pytest.fixture
def known_state(bus_settings, kafka_topic):
    """6 messages on partition 0 with the group at offset 2, and 2 dead letters for the group."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    group = f"status-{uuid.uuid4().hex[:6]}"
    produce_one_per_batch(bootstrap, kafka_topic, 6, partition=0)
    commit(bootstrap, group, kafka_topic, 0, 2)
    produce_one_per_batch(bootstrap, f"{kafka_topic}-{group}-dead-letter", 2, partition=0)
    return bootstrap, kafka_topic, group


@pytest.mark.django_db
def test_status__lag_oldest_unconsumed_dead_letters_and_outbox(known_state):
    """The JSON report gives per-partition committed/end/lag, the oldest unconsumed time, dead letters, outbox."""
    _bootstrap, topic, group = known_state
    for number in range(3):
        OutboxEvent.objects.create(topic=topic, event_type=ENROLLMENT_SIGNAL.event_type, event_key_field="k",
                                   event_id=f"id-{number}", event_data="{}", event_metadata="{}")
    out = io.StringIO()
    call_command("event_bus_status", "-t", topic, "-g", group, "--json", stdout=out)
    report = json.loads(out.getvalue())
    by_partition = {p["partition"]: p for p in report["partitions"]}
    assert by_partition[0] == {
        "partition": 0, "committed": 2, "end": 6, "lag": 4,
        "oldest_unconsumed": datetime.fromtimestamp((BASE_MS + 2000) / 1000, tz=UTC).isoformat(),
    }
    assert by_partition[1]["lag"] == 0 and by_partition[1]["committed"] is None
    assert report["total_lag"] == 4
    assert report["dead_letters"] == 2
    assert report["outbox"]["pending"] == 3 and report["outbox"]["failed"] == 0
    assert report["outbox"]["oldest_pending_age_sec"] >= 0


@pytest.mark.django_db
def test_status__table_output_is_readable(known_state):
    """Without --json the report is a table with a total and the dead-letter and outbox lines."""
    _bootstrap, topic, group = known_state
    out = io.StringIO()
    call_command("event_bus_status", "-t", topic, "-g", group, stdout=out)
    text = out.getvalue()
    assert f"Topic {topic}, group {group}" in text
    assert "Total lag: 4" in text
    assert "Dead letters" in text and "2 messages" in text
    assert "Outbox: 0 pending" in text


def test_status__as_a_process_and_unknown_topic(known_state):
    """The command works as a real process; an unknown topic is a clear non-zero error."""
    bootstrap, topic, group = known_state
    env = {**os.environ, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    ok = subprocess.run([sys.executable, "manage.py", "event_bus_status", "-t", topic, "-g", group, "--json",
                         "--no-outbox"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["total_lag"] == 4
    missing = subprocess.run([sys.executable, "manage.py", "event_bus_status", "-t", "no-such-topic", "-g", group,
                              "--no-outbox"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                             check=False)
    assert missing.returncode != 0
    assert "topic 'no-such-topic' does not exist" in missing.stderr


@pytest.mark.django_db
def test_status__shows_the_groups_inbox_size_and_oldest_row(known_state, settings):
    """With deduplication on, the report has the group's inbox rows, the table's rows and the oldest row's age."""
    from datetime import timedelta

    from django.utils import timezone

    from edx_event_bus_kafka.models import InboxEvent

    _bootstrap, topic, group = known_state
    settings.EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION = {group: True}
    for event_id, owner, hours in (("a", group, 5), ("b", group, 1), ("c", "someone-else", 9)):
        InboxEvent.objects.create(consumer_group=owner, event_id=event_id, topic=topic, kafka_partition=0,
                                  kafka_offset=0, processed_at=timezone.now() - timedelta(hours=hours))
    out = io.StringIO()
    call_command("event_bus_status", "-t", topic, "-g", group, "--json", stdout=out)
    inbox = json.loads(out.getvalue())["inbox"]
    assert (inbox["deduplication"], inbox["group_rows"], inbox["table_rows"]) == ("on", 2, 3)
    assert 5 * 3600 - 60 < inbox["oldest_age_sec"] < 5 * 3600 + 60
    table = io.StringIO()
    call_command("event_bus_status", "-t", topic, "-g", group, stdout=table)
    assert "Inbox (deduplication on): 2 events remembered for this group, oldest processed 18" in table.getvalue()
    assert "; 3 rows in the table; retention 604800 s" in table.getvalue()
