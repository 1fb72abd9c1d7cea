"""The inbox on SQLite, in process: the setting, run-once, rollback, duplicates, purging, status, the command."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import Message
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone
from openedx_events.data import EventsMetadata
from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED, COURSE_UNENROLLMENT_COMPLETED

from edx_event_bus_kafka.internal.errors import ConfigurationError, ReceiverError
from edx_event_bus_kafka.internal.inbox import store
from edx_event_bus_kafka.internal.inbox.deduplication import Deduplicator
from edx_event_bus_kafka.internal.inbox.purging import InboxPurger
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.internal.settings.inbox import DeduplicationScope
from edx_event_bus_kafka.models import InboxEvent
from tests.events import enrollment_event_data
from tests.models import EventEffect

ROOT = Path(__file__).resolve().parents[2]
ENROLLED = COURSE_ENROLLMENT_CHANGED.event_type
UNENROLLED = COURSE_UNENROLLMENT_COMPLETED.event_type


def delivery(event_id: str = "e-1", group: str = "g", offset: int = 7) -> store.Delivery:
    return store.Delivery(group=group, event_id=event_id, topic="prefix-topic", partition=2, offset=offset)


def write_effect(event_id: str = "e-1"):
    """Receivers with one database write, as run_once calls them."""
    return lambda: EventEffect.objects.create(event_id=event_id, user_id=1, pid=0)


def fail_after_writing(event_id: str = "e-1"):
    def receivers() -> None:
        EventEffect.objects.create(event_id=event_id, user_id=1, pid=0)
        raise ReceiverError("1 of 1 receivers failed", [RuntimeError("boom")])
    return receivers


def remembered(processed_ago: timedelta, group: str = "g", event_id: str | None = None) -> InboxEvent:
    return InboxEvent.objects.create(consumer_group=group, event_id=event_id or uuid.uuid4().hex, topic="t",
                                     kafka_partition=0, kafka_offset=0, processed_at=timezone.now() - processed_ago)


@pytest.fixture
def inbox_table_renamed():
    """The inbox table is missing (as before the migration) for the length of the test."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE edx_event_bus_kafka_inboxevent RENAME TO inbox_elsewhere")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE inbox_elsewhere RENAME TO edx_event_bus_kafka_inboxevent")


# -- the setting -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (False, {("g", ENROLLED): False}),
    (True, {("g", ENROLLED): True, ("other", UNENROLLED): True}),
    ({"g": True, "off": False}, {("g", ENROLLED): True, ("g", UNENROLLED): True, ("off", ENROLLED): False,
                                 ("other", ENROLLED): False}),
    ({"g": [ENROLLED]}, {("g", ENROLLED): True, ("g", UNENROLLED): False, ("other", ENROLLED): False}),
])
def test_deduplication_setting__covers_the_groups_and_event_types_it_names(value, expected):
    """False, True and a dict of group -> True/False/[event types] decide which (group, type) deduplicate."""
    with override_settings(EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION=value):
        scope = get_settings().consumer_deduplication
    assert isinstance(scope, DeduplicationScope)
    assert {pair: scope.covers(*pair) for pair in expected} == expected


def test_deduplication_setting__defaults_to_off_and_describes_itself():
    """By default no group deduplicates; describe() says on, off or which event types."""
    assert not get_settings().consumer_deduplication.enabled_for("any")
    scope = DeduplicationScope(groups={"all": None, "some": frozenset({UNENROLLED, ENROLLED})})
    assert (scope.describe("all"), scope.describe("none")) == ("on", "off")
    assert scope.describe("some") == f"on for {ENROLLED}, {UNENROLLED}"


@pytest.mark.parametrize(("name", "value", "hint"), [
    ("EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION", "yes", "must be False, True, or a dict"),
    ("EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION", {"g": "org.openedx.x.v1"}, "a list of event types"),
    ("EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION", {"g": []}, "use False to turn deduplication off"),
    ("EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION", {"g": [""]}, "is not an event type name"),
    ("EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION", {"x" * 256: True}, "at most 255 characters"),
    ("EVENT_BUS_KAFKA_INBOX_RETENTION_SEC", 0, "> 0.0"),
    ("EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC", 0, "or None for never"),
    ("EVENT_BUS_KAFKA_INBOX_PURGE_BATCH_SIZE", 0, "whole number >= 1"),
])
def test_inbox_settings__bad_values_name_the_setting_value_and_fix(name, value, hint):
    """An invalid inbox setting is a ConfigurationError naming it, its value and what to use."""
    with override_settings(**{name: value}), pytest.raises(ConfigurationError) as raised:
        get_settings()
    message = str(raised.value)
    assert name in message and hint in message
    assert repr(value)[:40] in message


def test_inbox_purge_interval__none_turns_worker_purging_off():
    """EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC = None: the worker never purges (and never touches the table)."""
    with override_settings(EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC=None):
        purger = InboxPurger(get_settings())
    assert not purger.enabled
    assert purger.between_batches() == 0 and purger.batches == 0


# -- run once ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_run_once__first_copy_runs_the_receivers_and_records_where_it_came_from():
    """A new event id: the receivers run, their write and the inbox row commit together."""
    assert store.run_once(delivery(), write_effect(), using="default") is True
    assert EventEffect.objects.count() == 1
    row = InboxEvent.objects.get()
    assert (row.consumer_group, row.event_id, row.topic, row.kafka_partition, row.kafka_offset) == (
        "g", "e-1", "prefix-topic", 2, 7)
    assert timezone.now() - row.processed_at < timedelta(minutes=1)


@pytest.mark.django_db(transaction=True)
def test_run_once__a_later_copy_is_skipped_without_running_the_receivers():
    """The same event id again in the same group: False, receivers not called, nothing written; other groups run."""
    store.run_once(delivery(), write_effect(), using="default")
    called = []
    assert store.run_once(delivery(offset=99), lambda: called.append(1), using="default") is False
    assert called == []
    assert EventEffect.objects.count() == 1 and InboxEvent.objects.count() == 1
    assert store.run_once(delivery(group="other"), write_effect(), using="default") is True
    assert EventEffect.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_run_once__receiver_error_rolls_back_the_effect_and_the_inbox_row_then_a_retry_runs():
    """A receiver error leaves neither its write nor the inbox row; the next attempt runs and records once."""
    with pytest.raises(ReceiverError):
        store.run_once(delivery(), fail_after_writing(), using="default")
    assert EventEffect.objects.count() == 0 and InboxEvent.objects.count() == 0
    assert store.run_once(delivery(), write_effect(), using="default") is True
    assert EventEffect.objects.count() == 1 and InboxEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_run_once__a_receiver_hiding_a_database_error_fails_instead_of_a_silent_rollback():
    """A receiver that swallows an IntegrityError broke the transaction: ReceiverError, nothing committed."""
    existing = EventEffect.objects.create(event_id="before", user_id=1, pid=0)

    def hides_error() -> None:
        EventEffect.objects.create(event_id="e-1", user_id=2, pid=0)
        try:
            EventEffect.objects.create(id=existing.id, event_id="clash", user_id=3, pid=0)
        except IntegrityError:
            pass  # the mistake: no transaction.atomic() around the failing statement

    with pytest.raises(ReceiverError, match="caught a database error"):
        store.run_once(delivery(), hides_error, using="default")
    assert list(EventEffect.objects.values_list("event_id", flat=True)) == ["before"]
    assert InboxEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_run_once__inside_a_callers_transaction_a_duplicate_leaves_that_transaction_usable():
    """Nested in an open transaction (a savepoint then), a duplicate rolls back only its own part."""
    store.run_once(delivery(), write_effect(), using="default")
    with transaction.atomic():
        EventEffect.objects.create(event_id="outer", user_id=1, pid=0)
        assert store.run_once(delivery(), write_effect("e-2"), using="default") is False
        EventEffect.objects.create(event_id="outer-after", user_id=1, pid=0)
    assert sorted(EventEffect.objects.values_list("event_id", flat=True)) == ["e-1", "outer", "outer-after"]


# -- the consumer's deduplicator ---------------------------------------------------------------


def emit_args(number: int = 1, event_id: uuid.UUID | None = None, offset: int = 10):
    metadata = EventsMetadata(event_type=ENROLLED, **({"id": event_id} if event_id else {}))
    message = Message(topic="prefix-enrollments", partition=1, offset=offset)
    return message, COURSE_ENROLLMENT_CHANGED, enrollment_event_data(number), metadata


@pytest.fixture
def effect_receiver():
    """COURSE_ENROLLMENT_CHANGED's receiver writes an EventEffect row, as a service's receiver would."""
    def receiver(sender=None, signal=None, **kwargs) -> None:
        EventEffect.objects.create(event_id=str(kwargs["metadata"].id), user_id=kwargs["enrollment"].user.id, pid=0)

    COURSE_ENROLLMENT_CHANGED.connect(receiver, dispatch_uid="test_inbox.effect")
    yield
    COURSE_ENROLLMENT_CHANGED.disconnect(dispatch_uid="test_inbox.effect")


@pytest.mark.django_db(transaction=True)
def test_deduplicator__skips_a_duplicate_counts_it_and_logs_its_context_at_info(effect_receiver, caplog):
    """A second copy of an event is not emitted; it is counted and logged at INFO with group, topic, offset, id."""
    caplog.set_level(logging.INFO, logger="edx_event_bus_kafka")
    with override_settings(EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION={"g": True}):
        deduplicator = Deduplicator.for_group("g", get_settings())
    assert deduplicator is not None
    event_id = uuid.uuid4()
    assert deduplicator.emit(*emit_args(event_id=event_id)) is True
    assert deduplicator.emit(*emit_args(event_id=event_id, offset=11)) is False
    assert EventEffect.objects.filter(event_id=str(event_id)).count() == 1
    assert (deduplicator.processed, deduplicator.duplicates) == (1, 1)
    (line,) = [r for r in caplog.records if "Skipping duplicate" in r.getMessage()]
    assert line.levelno == logging.INFO
    for part in ("'g'", "topic=prefix-enrollments", "partition=1", "offset=11", f"event_id={event_id}",
                 f"event_type={ENROLLED}"):
        assert part in line.getMessage()


@pytest.mark.django_db(transaction=True)
def test_deduplicator__event_types_not_covered_go_to_receivers_without_the_inbox(effect_receiver):
    """With a list of event types, other types are emitted every time and leave no inbox row."""
    with override_settings(EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION={"g": [UNENROLLED]}):
        deduplicator = Deduplicator.for_group("g", get_settings())
    assert deduplicator is not None
    event_id = uuid.uuid4()
    assert deduplicator.emit(*emit_args(event_id=event_id)) is True
    assert deduplicator.emit(*emit_args(event_id=event_id)) is True
    assert EventEffect.objects.filter(event_id=str(event_id)).count() == 2
    assert InboxEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_deduplicator__none_for_groups_not_covered_and_a_missing_table_is_a_configuration_error(inbox_table_renamed):
    """Groups the setting does not name get no deduplicator; a named group without the table fails at start."""
    with override_settings(EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION={"g": True}):
        assert Deduplicator.for_group("other", get_settings()) is None
        with pytest.raises(ConfigurationError, match=r"run \./manage\.py migrate edx_event_bus_kafka"):
            Deduplicator.for_group("g", get_settings())


# -- purging -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_purge_batch__deletes_the_oldest_expired_rows_up_to_the_batch_and_keeps_recent_ones():
    """One batch deletes at most batch_size rows older than the cutoff, oldest first; group narrows it."""
    old = [remembered(timedelta(days=10 + n)) for n in range(5)]
    other_group = remembered(timedelta(days=30), group="h")
    recent = remembered(timedelta(hours=1))
    cutoff = timezone.now() - timedelta(days=7)
    assert store.purge_batch(store.Rows(before=cutoff, group="g"), using="default", batch_size=3) == 3
    left = set(InboxEvent.objects.values_list("id", flat=True))
    assert left == {old[0].id, old[1].id, other_group.id, recent.id}  # the three oldest of group g went
    assert sum(store.purge(store.Rows(before=cutoff), using="default", batch_size=3)) == 3
    assert set(InboxEvent.objects.values_list("id", flat=True)) == {recent.id}


@pytest.mark.django_db(transaction=True)
def test_purger__due_at_start_then_each_interval_and_at_once_while_batches_come_back_full():
    """The worker purges after its first batch, again straight away after a full batch, else after the interval."""
    for _ in range(5):
        remembered(timedelta(days=8))
    now = [100.0]
    with override_settings(EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC=60, EVENT_BUS_KAFKA_INBOX_PURGE_BATCH_SIZE=2):
        purger = InboxPurger(get_settings(), clock=lambda: now[0])
    assert [purger.between_batches() for _ in range(4)] == [2, 2, 1, 0]  # the 1 was not full: wait now
    assert purger.batches == 3
    remembered(timedelta(days=8))
    now[0] += 59.9
    assert purger.between_batches() == 0
    now[0] += 0.2
    assert purger.between_batches() == 1
    assert (purger.purged, purger.batches) == (6, 4)


@pytest.mark.django_db(transaction=True)
def test_purger__a_database_error_is_logged_and_tried_again_after_the_interval(inbox_table_renamed, caplog):
    """Purging never breaks the worker: a failure is a warning, and the next attempt waits for the interval."""
    now = [0.0]
    purger = InboxPurger(get_settings(), clock=lambda: now[0])
    assert purger.between_batches() == 0
    assert "Could not purge expired inbox rows" in caplog.text
    now[0] += 30
    assert purger.between_batches() == 0 and purger.batches == 1  # not due yet


# -- status and the command --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_inbox_status__counts_the_groups_rows_the_table_and_the_groups_oldest_row():
    """event_bus_status's inbox figures: rows of the group, of the table, and the group's oldest row."""
    remembered(timedelta(hours=3))
    remembered(timedelta(hours=1))
    remembered(timedelta(days=2), group="h")
    with override_settings(EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION={"g": True}):
        status = store.inbox_status("g", get_settings())
    assert (status["deduplication"], status["group_rows"], status["table_rows"]) == ("on", 2, 3)
    assert 3 * 3600 - 60 < status["oldest_age_sec"] < 3 * 3600 + 60
    assert store.inbox_status("nobody", get_settings())["oldest_age_sec"] is None


@pytest.mark.django_db(transaction=True)
def test_purge_command__dry_run_counts_then_deletes_rows_past_the_retention():
    """purge_event_bus_inbox --dry-run deletes nothing; without it the expired rows (of --group) go."""
    for group in ("g", "g", "h"):
        remembered(timedelta(days=8), group=group)
    remembered(timedelta(days=1))
    out = io.StringIO()
    call_command("purge_event_bus_inbox", "--dry-run", stdout=out)
    assert "Dry run: would delete 3 inbox rows of every group processed before" in out.getvalue()
    assert InboxEvent.objects.count() == 4
    call_command("purge_event_bus_inbox", "--group", "h", stdout=out)
    assert "Deleted 1 inbox rows of group 'h'" in out.getvalue()
    call_command("purge_event_bus_inbox", "--batch-size", "1", stdout=out)
    assert "Deleted 2 inbox rows of every group" in out.getvalue()
    call_command("purge_event_bus_inbox", "--older-than", "0", stdout=out)
    assert "Deleted 1 inbox rows" in out.getvalue() and InboxEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_purge_command__since_forgets_what_a_group_processed_from_a_time_on_for_a_replay():
    """--since TIME --group G deletes G's rows processed at or after TIME, whatever their age, and no others."""
    earlier = remembered(timedelta(hours=5))
    remembered(timedelta(hours=1))
    remembered(timedelta(minutes=1))
    elsewhere = remembered(timedelta(minutes=1), group="h")
    since = (timezone.now() - timedelta(hours=2)).isoformat()
    out = io.StringIO()
    call_command("purge_event_bus_inbox", "--group", "g", "--since", since, stdout=out)
    assert "Deleted 2 inbox rows of group 'g' processed at or after" in out.getvalue()
    assert set(InboxEvent.objects.values_list("id", flat=True)) == {earlier.id, elsewhere.id}


@pytest.mark.parametrize(("argv", "complaint"), [
    (["--since", "2026-11-28T09:00:00"], "has no timezone"),
    (["--since", "yesterday"], "is not an ISO 8601 date and time"),
    (["--older-than", "-1"], "must be >= 0"),
    (["--since", "2026-11-28T09:00:00Z", "--older-than", "5"], "not allowed with argument"),
])
def test_purge_command__bad_arguments_exit_with_status_2_and_say_why(argv, complaint):
    """Arguments that do not parse are a usage error (status 2) naming the problem."""
    result = subprocess.run([sys.executable, "manage.py", "purge_event_bus_inbox", *argv], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and complaint in result.stderr, result.stderr


@pytest.mark.django_db(transaction=True)
def test_purge_command__a_missing_table_is_an_error_that_says_to_migrate(inbox_table_renamed):
    """Without the inbox table the command fails (status 1) and says what to run."""
    with pytest.raises(CommandError, match="migrate edx_event_bus_kafka"):
        call_command("purge_event_bus_inbox", stdout=io.StringIO())
