"""The consumer loop on the in-memory Kafka: delivery, retries, dead letters, commits, rebalances, exits."""
from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError

from edx_event_bus_kafka import KafkaEventConsumer
from edx_event_bus_kafka.internal.dead_letters.writer import REDRIVE_GROUP
from edx_event_bus_kafka.internal.runtime.worker import (
    EXIT_CONFIG,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_TOO_MANY_ERRORS,
    WorkerExit,
)
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_SIGNAL
from tests.support import telemetry
from tests.support.memory_bus import encoded_event, run_to_exit, run_until, unusable_messages, without
from tests.support.producing import event_data, produce


@pytest.fixture
def topic(bus) -> str:
    """A fresh topic with 3 partitions."""
    name = f"topic-{uuid.uuid4().hex[:8]}"
    bus.create_topic(name, 3)
    return name


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="edx_event_bus_kafka")
    return caplog


def ends(bus, topic: str) -> dict[int, int]:
    """Offset after the last message of each non-empty partition."""
    found: dict[int, int] = {}
    for message in bus.messages(topic):
        found[message.partition()] = message.offset() + 1
    return found


def send(bus, topic: str, number: int = 1, *, partition: int | None = 0, headers=None, **metadata):
    """Store enrollment event ``number`` as our producer encodes it; returns its metadata."""
    key, value, event_headers, event_metadata = encoded_event(number, **metadata)
    bus.send(topic, value, key=key, headers=event_headers if headers is None else headers, partition=partition)
    return event_metadata


def test_consume__receivers_get_the_data_and_metadata_that_were_produced(bus, topic, receiver):
    """Events sent by our producer reach the receiver with equal data and metadata; every offset is committed."""
    sent = produce(topic, 5)
    consumer = KafkaEventConsumer(topic, "group")
    assert run_until(consumer, lambda: len(receiver.calls) == 5) == EXIT_OK
    by_id = {call["metadata"].id: call for call in receiver.calls}
    assert set(by_id) == {metadata.id for metadata in sent}
    for number, metadata in enumerate(sent):
        assert by_id[metadata.id]["metadata"] == metadata
        assert by_id[metadata.id]["enrollment"] == event_data(number)["enrollment"]
    assert bus.committed("group", topic) == ends(bus, topic)


def test_receiver_failing_twice__event_delivered_three_times_and_committed_once(bus, topic, receiver, logs):
    """A receiver that fails twice then succeeds gets the event three times; the offset then moves on."""
    metadata = send(bus, topic)
    receiver.fail_first = 2
    consumer = KafkaEventConsumer(topic, "group")
    run_until(consumer, lambda: bus.committed("group", topic) == {0: 1}, what="the offset to be committed")
    assert [call["metadata"].id for call in receiver.calls] == [metadata.id] * 3
    assert logs.text.count("decision=retry") == 2


def test_receiver_always_failing__dead_lettered_with_provenance_and_loop_goes_on(bus, topic, receiver, settings):
    """An event that keeps failing lands in the group's dead-letter topic with provenance; the next one flows."""
    settings.EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS = 2
    failing = send(bus, topic, 1)
    later = send(bus, topic, 2)
    receiver.fail_first = 2
    consumer = KafkaEventConsumer(topic, "group")
    run_until(consumer, lambda: bus.committed("group", topic) == {0: 2}, what="both offsets committed")
    assert [call["metadata"].id for call in receiver.calls] == [failing.id, failing.id, later.id]
    (original, _) = bus.messages(topic)
    (dead,) = bus.messages(f"{topic}-group-dead-letter")
    headers = dict(dead.headers())
    assert (dead.key(), dead.value()) == (original.key(), original.value())
    assert dead.headers()[: len(original.headers())] == original.headers()
    assert headers["dead_letter_original_topic"] == topic.encode()
    assert headers["dead_letter_original_partition"] == b"0"
    assert headers["dead_letter_original_offset"] == b"0"
    assert headers["dead_letter_original_timestamp_ms"] == str(original.timestamp()[1]).encode()
    assert headers["dead_letter_group"] == b"group"
    assert headers["dead_letter_error_class"] == b"builtins.RuntimeError"  # the receiver's own exception
    assert b": RuntimeError: receiver failing on call 2" in headers["dead_letter_error_message"]
    assert headers["dead_letter_error_traceback"].startswith(b"Traceback (most recent call last):")
    assert headers["dead_letter_attempts"] == b"2"
    assert datetime.fromisoformat(headers["dead_letter_time"].decode()).tzinfo == UTC


def test_unusable_messages__each_dead_lettered_at_once_with_its_reason(bus, topic, receiver, logs):
    """Every kind of unusable raw message is dead-lettered after one attempt (not lost, no crash); then a good one."""
    cases = unusable_messages()
    for key, value, headers in cases.values():
        bus.send(topic, value, key=key, headers=headers, partition=0)
    good = send(bus, topic, 2)
    consumer = KafkaEventConsumer(topic, "group")
    run_until(consumer, lambda: receiver.calls, what="the good event")
    assert [call["metadata"].id for call in receiver.calls] == [good.id]
    dead = bus.messages(f"{topic}-group-dead-letter")
    assert len(dead) == len(cases)
    for (reason, (key, value, headers)), letter in zip(cases.items(), dead, strict=True):
        provenance = dict(letter.headers())
        assert provenance["dead_letter_error_class"] == b"edx_event_bus_kafka.internal.errors.UnusableMessageError"
        assert reason.encode() in provenance["dead_letter_error_message"], (reason, provenance)
        assert provenance["dead_letter_attempts"] == b"1"
        assert (letter.key(), letter.value()) == (key, value)
        assert letter.headers()[: len(headers)] == headers
    assert "Error consuming event from Kafka" in logs.text


def test_dead_letter_topic_not_writable__message_is_not_skipped(bus, topic, settings, logs):
    """When the dead letter cannot be written the loop keeps retrying, commits nothing, and exits 3 at the limit."""
    settings.EVENT_BUS_KAFKA_DEAD_LETTER_TOPIC = "{topic} has spaces and is not a valid topic name"
    settings.EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT = 3
    key, value, headers, _ = encoded_event()
    bus.send(topic, value, key=key, headers=without(headers, "ce_id"), partition=0)
    assert run_to_exit(KafkaEventConsumer(topic, "group")) == EXIT_TOO_MANY_ERRORS
    assert logs.text.count("Could not dead-letter") == 2  # the third failure reaches the limit first
    assert "Too many consecutive errors" in logs.text
    assert bus.committed("group", topic) == {}


def test_receiver_errors__consecutive_errors_limit_exits_3_without_committing(bus, topic, receiver, settings):
    """EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT ends a stuck loop with status 3; nothing is skipped."""
    settings.EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS = 10
    settings.EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT = 2
    receiver.always_fail = True
    send(bus, topic)
    consumer = KafkaEventConsumer(topic, "group")
    with pytest.raises(WorkerExit) as raised:
        consumer.consume_indefinitely()
    assert raised.value.code == EXIT_TOO_MANY_ERRORS
    assert len(receiver.calls) == 2
    assert bus.committed("group", topic) == {}


def test_fatal_client_error__run_returns_exit_1(bus, topic):
    """A fatal librdkafka error reported to the consumer's error callback stops the loop with status 1."""
    consumer = KafkaEventConsumer(topic, "group")
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(consumer.run()))
    thread.start()
    wait_for(lambda: bus.consumers, timeout=10, what="the consumer client")
    bus.raise_client_error(KafkaError(KafkaError._FATAL, "simulated fatal error", fatal=True), kind="consumer")
    thread.join(10)
    assert result == [EXIT_FATAL]


def test_fatal_poll_error__run_returns_exit_1(bus, topic, logs):
    """A fatal error event from poll stops the loop with status 1."""
    bus.fail_next_poll(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    assert run_to_exit(KafkaEventConsumer(topic, "group")) == EXIT_FATAL
    assert "Error polling Kafka" in logs.text


def test_poll_errors__back_off_and_count_towards_the_limit(bus, topic, settings, logs):
    """Non-fatal poll errors are logged, waited out and counted: enough in a row exit with status 3."""
    settings.EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT = 3
    bus.fail_next_poll(KafkaError(KafkaError._TRANSPORT), times=None)
    assert run_to_exit(KafkaEventConsumer(topic, "group")) == EXIT_TOO_MANY_ERRORS
    assert logs.text.count("Error polling Kafka") == 3


def test_partition_eof_events__are_not_errors(bus, topic, receiver, settings):
    """End-of-partition events (enable.partition.eof) are ignored: not counted, and events still flow."""
    settings.EVENT_BUS_KAFKA_CONSUMER_CONFIG = {"enable.partition.eof": True}
    settings.EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT = 1
    send(bus, topic)
    consumer = KafkaEventConsumer(topic, "group")
    assert run_until(consumer, lambda: bus.committed("group", topic) == {0: 1}) == EXIT_OK
    assert len(receiver.calls) == 1


def test_refused_connection__run_returns_exit_2(bus, topic, logs):
    """A broker that refuses our credentials ends the loop with the configuration status, saying so."""
    bus.refuse_connections()
    assert run_to_exit(KafkaEventConsumer(topic, "group")) == EXIT_CONFIG
    assert "Kafka refused the consumer of" in logs.text


def test_stop__idle_loop_returns_zero_and_closes_its_client(bus, topic):
    """stop() ends an idle loop promptly with status 0, and the client leaves the group."""
    consumer = KafkaEventConsumer(topic, "group")
    assert run_until(consumer, lambda: bus.members("group")) == EXIT_OK
    assert bus.members("group") == [] and bus.consumers == []


def test_consumers_disabled__returns_zero_without_a_client(bus, topic, settings, logs):
    """EVENT_BUS_KAFKA_CONSUMERS_ENABLED=False: run() logs and returns 0 without making a client."""
    settings.EVENT_BUS_KAFKA_CONSUMERS_ENABLED = False
    assert KafkaEventConsumer(topic, "group").run() == EXIT_OK
    assert "Kafka consumers not enabled, exiting." in logs.text
    assert bus.consumers == []


def test_log_and_skip_policy__failed_message_is_logged_skipped_and_committed(bus, topic, receiver, settings, logs):
    """With the reference's log_and_skip policy a failing event is logged and skipped: no dead letter."""
    settings.EVENT_BUS_KAFKA_CONSUMER_FAILURE_POLICY = "log_and_skip"
    settings.EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS = 2
    receiver.always_fail = True
    send(bus, topic)
    consumer = KafkaEventConsumer(topic, "group")
    run_until(consumer, lambda: bus.committed("group", topic) == {0: 1}, what="the skipped offset committed")
    assert len(receiver.calls) == 2
    assert "failure policy log_and_skip" in logs.text
    assert "Dead-lettered" not in logs.text
    assert bus.messages(f"{topic}-group-dead-letter") == []


def test_monitoring__reference_custom_attributes_are_recorded(bus, topic, receiver):
    """Each consumed message sets the reference's custom attributes (topic, partition, offset, id, type)."""
    metadata = send(bus, topic, partition=2)
    run_until(KafkaEventConsumer(topic, "group"), lambda: receiver.calls)
    assert topic in telemetry.attributes_named("kafka_topic")
    assert telemetry.attributes_named("kafka_partition") == [2]
    assert telemetry.attributes_named("kafka_offset") == [0]
    assert telemetry.attributes_named("kafka_message_id") == [str(metadata.id)]
    assert telemetry.attributes_named("kafka_event_type") == [ENROLLMENT_SIGNAL.event_type]
    assert telemetry.attributes_named("kafka_received_message") == [True]


def test_event_types__other_types_are_skipped_and_committed(bus, topic, receiver):
    """A consumer limited to other event types emits nothing for these, and still moves past them."""
    send(bus, topic, 1)
    send(bus, topic, 2)
    consumer = KafkaEventConsumer(topic, "group", event_types=["org.openedx.learning.auth.session.login.completed.v1"])
    run_until(consumer, lambda: bus.committed("group", topic) == {0: 2}, what="both offsets committed")
    assert receiver.calls == []
    assert consumer.skipped_other_types == 2


def test_redriven_copy_for_another_group__is_skipped_and_committed(bus, topic, receiver):
    """A copy redriven for another group is not ours: skipped (not emitted) and committed; ours is processed."""
    for number, target in ((1, b"other-group"), (2, b"group")):
        key, value, headers, _ = encoded_event(number)
        bus.send(topic, value, key=key, headers=[*headers, (REDRIVE_GROUP, target)], partition=0)
    run_until(KafkaEventConsumer(topic, "group"), lambda: bus.committed("group", topic) == {0: 2})
    assert receiver.user_ids == [2]


def test_stop_in_the_middle_of_a_batch__only_what_was_done_is_committed(bus, topic, receiver):
    """Stopping after the first message of a batch commits that one; the next consumer gets the rest."""
    for number in range(3):
        send(bus, topic, number)
    first = KafkaEventConsumer(topic, "group")
    receiver.on_call = lambda _kwargs: first.stop()
    assert run_to_exit(first) == EXIT_OK
    assert bus.committed("group", topic) == {0: 1}
    receiver.on_call = None
    run_until(KafkaEventConsumer(topic, "group"), lambda: bus.committed("group", topic) == {0: 3})
    assert receiver.user_ids == [0, 1, 2]


def test_rebalance__revoked_partitions_are_committed_so_the_new_owner_goes_on_without_repeats(bus, topic, receiver):
    """A second worker joining takes partitions from the first, which commits them on revocation: no event twice."""
    sent = produce(topic, 12)
    first, second = KafkaEventConsumer(topic, "group"), KafkaEventConsumer(topic, "group")
    threads = []
    try:
        threads.append(threading.Thread(target=first.run))
        threads[0].start()
        wait_for(lambda: len(receiver.calls) == 12, timeout=10, what="the first worker to process everything")
        threads.append(threading.Thread(target=second.run))
        threads[1].start()
        wait_for(lambda: second.consumer is not None and bus.assignment(first.consumer)
                 and bus.assignment(second.consumer), timeout=10, what="both workers to own partitions")
        more = produce(topic, 12, start=20)
        wait_for(lambda: len(receiver.calls) == 24, timeout=10, what="the second batch")
    finally:
        for consumer in (first, second):
            consumer.stop()
        for thread in threads:
            thread.join(10)
    handled = [call["metadata"].id for call in receiver.calls]
    assert sorted(map(str, handled)) == sorted(str(metadata.id) for metadata in [*sent, *more])
    assert bus.committed("group", topic) == ends(bus, topic)
    assert len({message.partition() for message in bus.messages(topic)}) == 3, "keys spread over every partition"


def test_lost_partitions__are_not_committed_and_their_messages_come_again(bus, topic, receiver, logs):
    """When the group gives up on a worker mid-message, its offsets are not committed: the event comes again."""
    metadata = send(bus, topic)
    consumer = KafkaEventConsumer(topic, "group")

    def lose_the_session_once(_kwargs):
        if len(receiver.calls) == 1:
            (client,) = bus.consumers
            bus.expire(client)

    receiver.on_call = lose_the_session_once
    run_until(consumer, lambda: len(receiver.calls) == 2 and bus.committed("group", topic) == {0: 1})
    assert [call["metadata"].id for call in receiver.calls] == [metadata.id] * 2
    assert "Lost partitions [0, 1, 2]" in logs.text


def test_from_beginning__group_replays_the_whole_topic_then_goes_on(bus, topic, receiver, logs):
    """from_beginning moves the group back to the start of every partition, even though it had committed."""
    for number in range(4):
        send(bus, topic, number, partition=number % 2)
    bus.commit("group", topic, 0, 2)
    bus.commit("group", topic, 1, 2)
    consumer = KafkaEventConsumer(topic, "group", from_beginning=True)
    run_until(consumer, lambda: len(receiver.calls) == 4)
    assert sorted(receiver.user_ids) == [0, 1, 2, 3]
    assert "Replaying from the beginning" in logs.text


def test_offset_time__group_replays_from_the_first_message_at_or_after_it(bus, topic, receiver, logs):
    """offset_time moves the group to the first message at or after that time on each partition."""
    base_ms = 1_795_000_000_000
    for number in range(6):
        key, value, headers, _ = encoded_event(number)
        bus.send(topic, value, key=key, headers=headers, partition=number % 2, timestamp_ms=base_ms + number * 1000)
    bus.commit("group", topic, 0, 3)
    bus.commit("group", topic, 1, 3)
    when = datetime.fromtimestamp((base_ms + 2500) / 1000, tz=UTC)
    consumer = KafkaEventConsumer(topic, "group", offset_time=when.isoformat())
    run_until(consumer, lambda: len(receiver.calls) == 3)
    assert sorted(receiver.user_ids) == [3, 4, 5]
    assert f"Replaying from {when.isoformat()}" in logs.text


@pytest.mark.parametrize("concurrency", [1, 3])
def test_offset_time__a_restarted_worker_with_the_flag_does_not_replay_again(bus, receiver, logs, concurrency):
    """The replay's commits carry its marker: a restart with the same time consumes on, another time replays."""
    topic = f"replay-once-{uuid.uuid4().hex[:8]}"
    bus.create_topic(topic, 2)
    base_ms = 1_795_000_000_000
    for number in range(6):
        key, value, headers, _ = encoded_event(number)
        bus.send(topic, value, key=key, headers=headers, partition=number % 2, timestamp_ms=base_ms + number * 1000)
    bus.commit("group", topic, 0, 3)
    bus.commit("group", topic, 1, 3)
    when = datetime.fromtimestamp((base_ms + 2500) / 1000, tz=UTC)

    def worker(at: datetime) -> KafkaEventConsumer:
        return KafkaEventConsumer(topic, "group", offset_time=at.isoformat(), concurrency=concurrency)

    run_until(worker(when), lambda: bus.committed("group", topic) == {0: 3, 1: 3} and len(receiver.calls) == 3)
    assert sorted(receiver.user_ids) == [3, 4, 5]
    marker = f"edx_event_bus_kafka replayed-from={when.isoformat()}"
    assert bus.commit_metadata_of("group", topic) == {0: marker, 1: marker}
    send(bus, topic, 6, partition=0)
    run_until(worker(when), lambda: len(receiver.calls) == 4)
    assert receiver.user_ids[3:] == [6]  # a replay would have brought 4 back first
    assert f"Not replaying from {when.isoformat()}: the group already did" in logs.text
    earlier = datetime.fromtimestamp((base_ms + 500) / 1000, tz=UTC)
    run_until(worker(earlier), lambda: len(receiver.calls) == 4 + 6)
    assert sorted(receiver.user_ids[4:]) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("committed_before", [0, 2], ids=["no-commit-yet", "committed"])
def test_rebalance_served_after_a_message_was_fetched__that_message_is_not_processed_twice(
    bus, topic, receiver, monkeypatch, committed_before,
):
    """Seen on Apache Kafka: poll() returned a message, the next consume() revoked and re-assigned its partition.

    The message came from the old assignment, the re-fetch from the committed offset brought it again,
    and a live worker processed it twice; worse, as the new assignment's first offset it let the commit
    run ahead of the messages before it. Messages of a partition revoked during the fetch that returned
    them are dropped and the partition is read again from its committed offset (or the beginning).
    """
    from edx_event_bus_kafka.testing.memory.consumer import MemoryConsumer

    original_poll = MemoryConsumer.poll
    armed, rebalanced = [False], []

    def poll_then_rebalance(self, timeout=-1):
        message = original_poll(self, timeout)
        if message is not None and message.error() is None and armed[0] and not rebalanced:
            rebalanced.append(message.offset())
            with self.kafka.lock:
                self._group().rebalance()  # eager: the next consume() revokes and re-assigns every partition
        return message

    monkeypatch.setattr(MemoryConsumer, "poll", poll_then_rebalance)
    consumer = KafkaEventConsumer(topic, "group")
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        wait_for(lambda: consumer.consumer is not None and bus.assignment(consumer.consumer), timeout=10,
                 what="the partitions to be assigned")
        sent = [send(bus, topic, number, partition=0) for number in range(committed_before)]
        wait_for(lambda: bus.committed("group", topic).get(0, 0) == committed_before, timeout=10,
                 what="the first messages to be committed")
        armed[0] = True
        sent += [send(bus, topic, number, partition=0) for number in range(10, 13)]
        wait_for(lambda: bus.committed("group", topic).get(0) == committed_before + 3, timeout=10,
                 what="every message to be committed")
    finally:
        consumer.stop()
        thread.join(10)
    assert rebalanced == [committed_before], "the message came from poll() and a rebalance followed"
    handled = [str(call["metadata"].id) for call in receiver.calls]
    assert sorted(handled) == sorted(str(metadata.id) for metadata in sent), "each event once"


def test_rebalance_served_after_a_message_was_fetched__committed_offset_unreadable__worker_stops_with_1(
    bus, topic, receiver, monkeypatch, logs,
):
    """If the partition's committed offset cannot be read, going on would skip what was left out: exit 1 instead."""
    from edx_event_bus_kafka.internal.consume import parallel
    from edx_event_bus_kafka.testing.memory.consumer import MemoryConsumer

    monkeypatch.setattr(parallel, "COMMITTED_TIMEOUT_SEC", 0.1)
    original_poll = MemoryConsumer.poll

    def poll_then_rebalance_and_outage(self, timeout=-1):
        message = original_poll(self, timeout)
        if message is not None and message.error() is None and not bus.down:
            with self.kafka.lock:
                self._group().rebalance()
            bus.go_down()
        return message

    monkeypatch.setattr(MemoryConsumer, "poll", poll_then_rebalance_and_outage)
    consumer, result = KafkaEventConsumer(topic, "group"), []
    thread = threading.Thread(target=lambda: result.append(consumer.run()))
    thread.start()
    try:
        wait_for(lambda: consumer.consumer is not None and bus.assignment(consumer.consumer), timeout=10,
                 what="the partitions to be assigned")
        send(bus, topic, 1, partition=0)  # arrives while the worker polls
        thread.join(20)
    finally:
        consumer.stop()
        thread.join(10)
    assert result == [EXIT_FATAL]
    assert "Could not read the committed offsets of partitions [0] to read them again" in logs.text
    assert receiver.calls == [] and bus.committed("group", topic) == {}
