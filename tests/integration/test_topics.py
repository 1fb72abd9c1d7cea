"""create_event_bus_topics against the embedded broker: what is planned, created, left alone and reported."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource
from django.core.management import CommandError, call_command

from edx_event_bus_kafka.internal.operations.topics import ensure_topics, planned_topics
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


def test_create__dry_run_creates_nothing(bus_settings, kafka_broker):
    """--dry-run lists which topics exist and which would be created, and creates none."""
    prefix = use_fresh_prefix(bus_settings)
    kafka_broker.create_topics([f"{prefix}-login"], partitions=3)

    output = run("--dry-run", "--group", "activity")
    report = json.loads(run("--dry-run", "--json"))

    assert broker_partitions(kafka_broker, prefix) == {f"{prefix}-login": 3}
    assert {name: row[-1] for name, row in rows(output).items()} == {
        f"{prefix}-enrollment": "would create",
        f"{prefix}-login": "exists",
        f"{prefix}-enrollment-activity-dead-letter": "would create",
        f"{prefix}-login-activity-dead-letter": "would create",
    }
    assert output.splitlines()[-1] == "Dry run: would create 3 topics; 1 already exist."
    assert report["dry_run"] is True
    assert report["summary"] == {"created": 0, "exists": 1, "would-create": 1, "unknown": 0, "failed": 0}
    assert [(topic["name"], topic["status"]) for topic in report["topics"]] == [
        (f"{prefix}-enrollment", "would-create"), (f"{prefix}-login", "exists")]


def test_dry_run__broker_unreachable__still_shows_the_plan(settings):
    """Without a reachable broker a dry run shows the plan with existence unknown, then fails; so does a real run."""
    use_fresh_prefix(settings)
    settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:1"  # nothing listens on port 1

    out = io.StringIO()
    with pytest.raises(CommandError, match=r"could not list topics on 127\.0\.0\.1:1: .*; could not check 2 topics"):
        call_command("create_event_bus_topics", "--dry-run", "--timeout", "0.5", stdout=out)
    output = out.getvalue()

    assert all(row[-1] == "unknown" for row in rows(output).values()) and len(rows(output)) == 2, output
    assert "existence unknown: could not list topics on 127.0.0.1:1" in output
    assert output.splitlines()[-1] == "Dry run: 2 topics planned, whether they exist is unknown."
    with pytest.raises(CommandError, match=r"could not list topics on 127\.0\.0\.1:1: .*no topic was created"):
        run("--timeout", "0.5")


def test_create__existing_topic_with_fewer_partitions__is_reported_and_left_alone(bus_settings,
                                                                                  kafka_broker):
    """A topic that exists with fewer partitions than planned gets a warning and keeps its partitions."""
    prefix = use_fresh_prefix(bus_settings, {ENROLLMENT: PRODUCER_CONFIG[ENROLLMENT]})
    kafka_broker.create_topics([f"{prefix}-enrollment"], partitions=1)

    output = run("--partitions", "4")

    assert rows(output) == {f"{prefix}-enrollment": ["events", "1", "1", "unchanged", "exists (warning)"]}
    assert f"Warning: {prefix}-enrollment has 1 partition(s), fewer than the planned 4" in output
    assert output.splitlines()[-1] == "Created 0 topics; 1 already existed."
    assert broker_partitions(kafka_broker, prefix) == {f"{prefix}-enrollment": 1}


def test_plan__disabled_entries_are_ignored(bus_settings, kafka_broker):
    """Only topics with an enabled entry (exactly True) are created, with dead-letter topics for them only."""
    prefix = use_fresh_prefix(bus_settings, {
        ENROLLMENT: {
            "enrollment": {"event_key_field": "enrollment.course.course_key", "enabled": True},
            "off": {"event_key_field": "enrollment.course.course_key", "enabled": False},
            "shared": {"event_key_field": "enrollment.course.course_key", "enabled": False},
        },
        LOGIN: {
            "shared": {"event_key_field": "user.id", "enabled": True},
            "truthy": {"event_key_field": "user.id", "enabled": "yes"},  # openedx-events would not publish it
        },
    })

    run("--group", "g")

    assert sorted(broker_partitions(kafka_broker, prefix)) == [
        f"{prefix}-enrollment", f"{prefix}-enrollment-g-dead-letter",
        f"{prefix}-shared", f"{prefix}-shared-g-dead-letter",
    ]


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


def test_command__invalid_topic_name__fails_naming_it_and_creates_the_others(bus_settings, kafka_broker):
    """A topic that cannot be created makes the command exit non-zero naming it; the other topics are created."""
    prefix = use_fresh_prefix(bus_settings, {})
    out = io.StringIO()

    expected = rf"1 topic could not be created: '{prefix}-bad name!' \(invalid topic name"
    with pytest.raises(CommandError, match=expected) as raised:
        call_command("create_event_bus_topics", "--topic", "bad name!", "--topic", "good", stdout=out)

    assert raised.value.returncode == 1
    assert f"Error: {prefix}-bad name!: invalid topic name" in out.getvalue()
    assert out.getvalue().splitlines()[-1] == "Created 1 topic; 0 already existed; 1 failed."
    assert broker_partitions(kafka_broker, prefix) == {f"{prefix}-good": 3}


class RefusingAdmin:
    """The real admin client, except that one topic is refused as managed Kafka refuses it without a CREATE ACL."""

    def __init__(self, admin: Any, refused: str):
        self.admin = admin
        self.refused = refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self.admin, name)  # list_topics, poll ...: the real client's

    def create_topics(self, new_topics: list[Any], **kwargs: Any) -> dict[str, Future]:
        futures = self.admin.create_topics([topic for topic in new_topics if topic.topic != self.refused], **kwargs)
        refusal: Future = Future()
        refusal.set_exception(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)))
        return {**futures, self.refused: refusal}


def test_ensure_topics__a_refused_topic_is_reported_and_the_others_created(bus_settings, kafka_broker):
    """A broker error for one topic (authorization) is reported for it without stopping the others."""
    prefix = use_fresh_prefix(bus_settings)
    plans = planned_topics(get_settings(), groups=["activity"])
    refused = f"{prefix}-login-activity-dead-letter"

    results = ensure_topics(plans, admin=RefusingAdmin(kafka_broker.admin(), refused))

    assert {result.name: (result.status, result.error) for result in results if result.status != "created"} == {
        refused: ("failed", "TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed")}
    created = sorted(plan.name for plan in plans if plan.name != refused)
    assert sorted(broker_partitions(kafka_broker, prefix)) == created


def test_plan__prefix_dead_letter_names_and_overrides():
    """Plans prefix every topic, drop duplicates, make group ids topic-safe and use the settings' sizes."""
    settings = dataclasses.replace(get_settings(), topic_prefix="stage", topic_partitions=6,
                                   topic_replication_factor=3, topic_retention_ms=None, dead_letter_retention_ms=1000)

    plans = planned_topics(settings, groups=["a/b", "a/b"], extra_topics=["login", "other"],
                           producer_config={LOGIN: PRODUCER_CONFIG[LOGIN]})

    assert [(plan.name, plan.kind, plan.partitions, plan.replication_factor, plan.config) for plan in plans] == [
        ("stage-login", "events", 6, 3, {}),
        ("stage-other", "events", 6, 3, {}),
        ("stage-login-a_b-dead-letter", "dead-letter", 6, 3, {"retention.ms": "1000"}),
        ("stage-other-a_b-dead-letter", "dead-letter", 6, 3, {"retention.ms": "1000"}),
    ]


def test_command__bad_settings__is_a_command_error_naming_the_setting(settings):
    """Invalid settings or an empty plan stop the command with a message saying what to fix."""
    settings.EVENT_BUS_KAFKA_TOPIC_PARTITIONS = 0
    with pytest.raises(CommandError, match="EVENT_BUS_KAFKA_TOPIC_PARTITIONS=0 must be a whole number >= 1"):
        run("--dry-run")
    settings.EVENT_BUS_KAFKA_TOPIC_PARTITIONS = 3
    settings.EVENT_BUS_PRODUCER_CONFIG = {LOGIN: ["login"]}
    with pytest.raises(CommandError, match=r"EVENT_BUS_PRODUCER_CONFIG\['org.openedx.learning.auth"):
        run("--dry-run")
    settings.EVENT_BUS_PRODUCER_CONFIG = {}
    with pytest.raises(CommandError, match="No topics to create"):
        run("--dry-run")
