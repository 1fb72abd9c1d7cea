"""create_event_bus_topics against a real broker: what it creates and reports, as a command and a process.

Planning, dry runs, warnings and failures are tested on the in-memory Kafka in tests/unit/test_topics.py;
here the real broker proves it takes our topic configs and reports what exists.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka.admin import ConfigResource
from django.core.management import call_command

from edx_event_bus_kafka.internal.operations.topics import TopicPlan, ensure_topics, planned_topics
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from tests.support.workers import ROOT

pytestmark = pytest.mark.integration

ENROLLMENT = "org.openedx.learning.course.enrollment.changed.v1"
LOGIN = "org.openedx.learning.auth.session.login.completed.v1"
PRODUCER_CONFIG = {
    ENROLLMENT: {"enrollment": {"event_key_field": "enrollment.course.course_key", "enabled": True}},
    LOGIN: {"login": {"event_key_field": "user.id", "enabled": True}},
}


def use_fresh_prefix(settings, producer_config: dict | None = None) -> str:
    """Give this test its own topic prefix (topics outlive tests on the shared broker) and producer config."""
    prefix = f"topics-{uuid.uuid4().hex[:8]}"
    settings.EVENT_BUS_TOPIC_PREFIX = prefix
    settings.EVENT_BUS_PRODUCER_CONFIG = PRODUCER_CONFIG if producer_config is None else producer_config
    return prefix


def run(*args: str) -> str:
    """The command's output when run in this process."""
    out = io.StringIO()
    call_command("create_event_bus_topics", *args, stdout=out)
    return out.getvalue()


def rows(output: str) -> dict[str, list[str]]:
    """The table's rows by topic name: kind, partitions, replication, retention, status."""
    lines = output.splitlines()
    assert lines[0].split()[0] == "TOPIC", output
    table = {}
    for line in lines[1:]:
        if line.startswith(("Warning", "Error", "Dry run", "Created")):
            break
        name, kind, partitions, replication, retention, *status = line.split()
        table[name] = [kind, partitions, replication, retention, " ".join(status)]
    return table


def broker_partitions(broker, prefix: str) -> dict[str, int]:
    """Partition count of every topic on the broker whose name starts with ``prefix``."""
    metadata = broker.admin().list_topics(timeout=10)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items() if name.startswith(prefix)}


def retention_ms(broker, name: str) -> str | None:
    """``retention.ms`` the broker reports for a topic (the embedded broker reports only configs set at creation)."""
    admin = broker.admin()
    (future,) = admin.describe_configs([ConfigResource("topic", name)]).values()
    entry = future.result(timeout=10).get("retention.ms")
    return None if entry is None else entry.value


def test_create__event_and_dead_letter_topics_with_prefix_partitions_and_retention(bus_settings,
                                                                                     kafka_broker):
    """Enabled producer topics and each group's dead-letter topic on them are created with the planned settings."""
    prefix = use_fresh_prefix(bus_settings)
    bus_settings.EVENT_BUS_KAFKA_TOPIC_PARTITIONS = 2
    bus_settings.EVENT_BUS_KAFKA_TOPIC_RETENTION_MS = 3_600_000

    output = run("--group", "activity", "--group", "audit team")

    events = [f"{prefix}-enrollment", f"{prefix}-login"]
    letters = [f"{topic}-{group}-dead-letter" for topic in events for group in ("activity", "audit_team")]
    assert broker_partitions(kafka_broker, prefix) == dict.fromkeys(events + letters, 2)
    table = rows(output)
    assert list(table) == events + letters, "event topics first, then dead-letter topics, in plan order"
    assert all(table[name] == ["events", "2", "default", "1h", "created"] for name in events), output
    assert all(table[name] == ["dead-letter", "2", "default", "forever", "created"] for name in letters), output
    assert output.splitlines()[-1] == "Created 6 topics; 0 already existed."
    assert retention_ms(kafka_broker, events[0]) == "3600000"
    assert retention_ms(kafka_broker, letters[0]) == "-1"


def test_create__second_run_is_idempotent(bus_settings, kafka_broker):
    """A second run creates nothing and reports every topic as existing with its partition count."""
    prefix = use_fresh_prefix(bus_settings)
    settings = get_settings()
    plans = planned_topics(settings, groups=["activity"])

    first = ensure_topics(plans, settings=settings)
    second = ensure_topics(plans, settings=settings)

    assert [result.status for result in first] == ["created"] * 4
    assert [(result.status, result.current_partitions, result.current_replication_factor, result.warning)
            for result in second] == [("exists", 3, 1, None)] * 4
    assert broker_partitions(kafka_broker, prefix) == {plan.name: 3 for plan in plans}
    output = run("--group", "activity")
    assert [row[1:] for row in rows(output).values()] == [["3", "1", "unchanged", "exists"]] * 4, output
    assert output.splitlines()[-1] == "Created 0 topics; 4 already existed."


def test_command__as_a_real_process__creates_topics_and_prints_a_table(kafka_broker):
    """``python manage.py create_event_bus_topics`` exits 0 after creating the planned topics."""
    prefix = f"topics-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
           "EVENT_BUS_SETTINGS_JSON": json.dumps({"EVENT_BUS_TOPIC_PREFIX": prefix,
                                                  "EVENT_BUS_PRODUCER_CONFIG": PRODUCER_CONFIG})}
    done = subprocess.run(
        [sys.executable, "manage.py", "create_event_bus_topics", "--group", "activity", "--topic", "extra",
         "--partitions", "2", "--replication-factor", "1", "--retention-ms", "86400000"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )

    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    assert table[f"{prefix}-extra"] == ["events", "2", "1", "1d", "created"], done.stdout
    assert table[f"{prefix}-extra-activity-dead-letter"] == ["dead-letter", "2", "1", "forever", "created"]
    assert done.stdout.splitlines()[-1] == "Created 6 topics; 0 already existed."
    assert broker_partitions(kafka_broker, prefix) == dict.fromkeys(table, 2)


@pytest.mark.apache_kafka
def test_ensure_topics__a_topic_the_broker_refuses_is_reported_and_the_others_created(bus_settings, kafka_broker):
    """The broker's refusal of one topic (a replication factor larger than the cluster) is that topic's failure.

    Apache Kafka only: Tansu accepts any replication factor (and any name or config).
    """
    prefix = use_fresh_prefix(bus_settings)
    fine, refused = (TopicPlan(f"{prefix}-{name}", "events", 1, factor) for name, factor in (("fine", 1), ("big", 3)))

    results = ensure_topics([fine, refused])

    assert [(result.name, result.status) for result in results] == [(fine.name, "created"), (refused.name, "failed")]
    assert results[1].error is not None and results[1].error.startswith("INVALID_REPLICATION_FACTOR: ")
    assert broker_partitions(kafka_broker, prefix) == {fine.name: 1}
