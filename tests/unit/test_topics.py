"""create_event_bus_topics on the in-memory Kafka: what is planned, created, left alone and reported."""
from __future__ import annotations

import dataclasses
import io
import json

import pytest
from confluent_kafka import KafkaError
from django.core.management import CommandError, call_command

from edx_event_bus_kafka.internal.errors import TopicAdminError
from edx_event_bus_kafka.internal.operations.topics import ensure_topics, planned_topics
from edx_event_bus_kafka.internal.settings.declarations import get_settings

ENROLLMENT = "org.openedx.learning.course.enrollment.changed.v1"
LOGIN = "org.openedx.learning.auth.session.login.completed.v1"
PRODUCER_CONFIG = {
    ENROLLMENT: {"enrollment": {"event_key_field": "enrollment.course.course_key", "enabled": True}},
    LOGIN: {"login": {"event_key_field": "user.id", "enabled": True}},
}


@pytest.fixture
def topics(bus, settings):
    """The in-memory Kafka, with this module's producer config and the prefix ``p``."""
    settings.EVENT_BUS_TOPIC_PREFIX = "p"
    settings.EVENT_BUS_PRODUCER_CONFIG = PRODUCER_CONFIG
    return bus


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


def partitions(bus) -> dict[str, int]:
    return {name: bus.partition_count(name) for name in bus.topic_names()}


def test_create__event_and_dead_letter_topics_with_prefix_partitions_and_retention(topics, settings):
    """Enabled producer topics and each group's dead-letter topic on them are created with the planned settings."""
    settings.EVENT_BUS_KAFKA_TOPIC_PARTITIONS = 2
    settings.EVENT_BUS_KAFKA_TOPIC_RETENTION_MS = 3_600_000
    output = run("--group", "activity", "--group", "audit team")
    events = ["p-enrollment", "p-login"]
    letters = [f"{topic}-{group}-dead-letter" for topic in events for group in ("activity", "audit_team")]
    assert partitions(topics) == dict.fromkeys(events + letters, 2)
    table = rows(output)
    assert list(table) == events + letters, "event topics first, then dead-letter topics, in plan order"
    assert all(table[name] == ["events", "2", "default", "1h", "created"] for name in events), output
    assert all(table[name] == ["dead-letter", "2", "default", "forever", "created"] for name in letters), output
    assert output.splitlines()[-1] == "Created 6 topics; 0 already existed."
    assert topics.topic_config(events[0]) == {"retention.ms": "3600000"}
    assert topics.topic_config(letters[0]) == {"retention.ms": "-1"}


def test_create__second_run_is_idempotent(topics):
    """A second run creates nothing and reports every topic as existing with its partition count."""
    settings = get_settings()
    plans = planned_topics(settings, groups=["activity"])
    first = ensure_topics(plans, settings=settings)
    second = ensure_topics(plans, settings=settings)
    assert [result.status for result in first] == ["created"] * 4
    assert [(result.status, result.current_partitions, result.current_replication_factor, result.warning)
            for result in second] == [("exists", 3, 1, None)] * 4
    assert run("--group", "activity").splitlines()[-1] == "Created 0 topics; 4 already existed."


def test_create__dry_run_creates_nothing(topics):
    """--dry-run lists which topics exist and which would be created, and creates none."""
    topics.create_topic("p-login", 3)
    output = run("--dry-run", "--group", "activity")
    report = json.loads(run("--dry-run", "--json"))
    assert topics.topic_names() == ["p-login"]
    assert {name: row[-1] for name, row in rows(output).items()} == {
        "p-enrollment": "would create", "p-login": "exists",
        "p-enrollment-activity-dead-letter": "would create", "p-login-activity-dead-letter": "would create",
    }
    assert output.splitlines()[-1] == "Dry run: would create 3 topics; 1 already exist."
    assert report["summary"] == {"created": 0, "exists": 1, "would-create": 1, "unknown": 0, "failed": 0}


def test_dry_run__broker_down__still_shows_the_plan_then_fails_and_so_does_a_real_run(topics):
    """Without an answering broker a dry run shows the plan with existence unknown, then fails; so does a real run."""
    topics.go_down()
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"could not list topics on .*: _TRANSPORT: .*; could not check 2 topics"):
        call_command("create_event_bus_topics", "--dry-run", "--timeout", "0.2", stdout=out)
    output = out.getvalue()
    assert all(row[-1] == "unknown" for row in rows(output).values()) and len(rows(output)) == 2, output
    assert f"existence unknown: could not list topics on {topics.bootstrap_servers}: _TRANSPORT" in output
    assert output.splitlines()[-1] == "Dry run: 2 topics planned, whether they exist is unknown."
    with pytest.raises(CommandError, match=r"could not list topics on .*: _TRANSPORT: .*no topic was created"):
        run("--timeout", "0.2")
    assert topics.topic_names() == []


def test_refusing_broker__nothing_is_checked_or_created(topics):
    """A broker refusing our credentials stops the command at once, dry run or not."""
    topics.refuse_connections()
    for dry_run in (True, False):
        with pytest.raises(TopicAdminError, match=r"Kafka refused the admin client: .*nothing was checked or created"):
            ensure_topics(planned_topics(get_settings()), dry_run=dry_run, timeout=30)


def test_create__existing_topic_with_fewer_partitions__is_reported_and_left_alone(topics, settings):
    """A topic that exists with fewer partitions than planned gets a warning and keeps its partitions."""
    settings.EVENT_BUS_PRODUCER_CONFIG = {ENROLLMENT: PRODUCER_CONFIG[ENROLLMENT]}
    topics.create_topic("p-enrollment", 1)
    output = run("--partitions", "4")
    assert rows(output) == {"p-enrollment": ["events", "1", "1", "unchanged", "exists (warning)"]}
    assert "Warning: p-enrollment has 1 partition(s), fewer than the planned 4" in output
    assert topics.partition_count("p-enrollment") == 1


def test_plan__disabled_entries_are_ignored(topics, settings):
    """Only topics with an enabled entry (exactly True) are created, with dead-letter topics for them only."""
    settings.EVENT_BUS_PRODUCER_CONFIG = {
        ENROLLMENT: {
            "enrollment": {"event_key_field": "enrollment.course.course_key", "enabled": True},
            "off": {"event_key_field": "enrollment.course.course_key", "enabled": False},
            "shared": {"event_key_field": "enrollment.course.course_key", "enabled": False},
        },
        LOGIN: {
            "shared": {"event_key_field": "user.id", "enabled": True},
            "truthy": {"event_key_field": "user.id", "enabled": "yes"},  # openedx-events would not publish it
        },
    }
    run("--group", "g")
    assert topics.topic_names() == ["p-enrollment", "p-enrollment-g-dead-letter", "p-shared",
                                    "p-shared-g-dead-letter"]


def test_command__invalid_topic_name__fails_naming_it_and_creates_the_others(topics, settings):
    """A topic that cannot be created makes the command exit non-zero naming it; the other topics are created."""
    settings.EVENT_BUS_PRODUCER_CONFIG = {}
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"1 topic could not be created: 'p-bad name!' \(invalid topic name") as e:
        call_command("create_event_bus_topics", "--topic", "bad name!", "--topic", "good", stdout=out)
    assert e.value.returncode == 1
    assert "Error: p-bad name!: invalid topic name" in out.getvalue()
    assert out.getvalue().splitlines()[-1] == "Created 1 topic; 0 already existed; 1 failed."
    assert topics.topic_names() == ["p-good"]


def test_ensure_topics__a_refused_topic_is_reported_and_the_others_created(topics):
    """A broker error for one topic (no CREATE ACL on managed Kafka) is reported for it; the others are created."""
    refused = "p-login-activity-dead-letter"
    topics.deny_topic(refused, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    plans = planned_topics(get_settings(), groups=["activity"])
    results = ensure_topics(plans)
    assert {result.name: (result.status, result.error) for result in results if result.status != "created"} == {
        refused: ("failed", "TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed")}
    assert topics.topic_names() == sorted(plan.name for plan in plans if plan.name != refused)


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


def test_command__bad_settings__is_a_command_error_naming_the_setting(topics, settings):
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
