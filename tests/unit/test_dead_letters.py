"""Dead letters on the in-memory Kafka: writing them, reading them back, and re-driving chosen ones."""
from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import KafkaError
from django.core.management import CommandError, call_command

from edx_event_bus_kafka import KafkaEventConsumer
from edx_event_bus_kafka.internal.dead_letters.letters import DeadLetter, latest_per_event, read_dead_letters
from edx_event_bus_kafka.internal.dead_letters.redrive import redrive
from edx_event_bus_kafka.internal.dead_letters.writer import REDRIVE_GROUP, DeadLetterWriter
from edx_event_bus_kafka.internal.errors import DeadLetterError, RedriveError, RepublishError
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from tests.support.memory_bus import encoded_event, run_until


@pytest.fixture
def topic(bus) -> str:
    name = f"topic-{uuid.uuid4().hex[:8]}"
    bus.create_topic(name, 3)
    return name


def header(message, name: str) -> str | None:
    values = [value.decode() for key, value in message.headers() or () if key == name]
    return values[0] if values else None


def redriven_copies(bus, topic: str) -> list:
    """Messages of ``topic`` that redrive re-published (they carry the redrive header)."""
    return [message for message in bus.messages(topic) if header(message, REDRIVE_GROUP) is not None]


def dead_letter_all(bus, topic: str, group: str, receiver, settings, count: int) -> list[str]:
    """Put ``count`` events on ``topic`` and have ``group`` dead-letter every one; their event ids."""
    settings.EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS = 1
    sent = []
    for number in range(count):
        key, value, headers, metadata = encoded_event(number)
        bus.send(topic, value, key=key, headers=headers, partition=number % 3)
        sent.append(str(metadata.id))
    receiver.always_fail = True
    run_until(KafkaEventConsumer(topic, group), lambda: len(bus.messages(f"{topic}-{group}-dead-letter")) == count,
              what="every event dead-lettered")
    receiver.always_fail = False
    receiver.calls.clear()
    return sent


def command(*args: str) -> str:
    out = io.StringIO()
    call_command("redrive_dead_letters", *args, stdout=out)
    return out.getvalue()


# -- writing -----------------------------------------------------------------------------------


def stored_message(bus, topic: str):
    key, value, headers, _ = encoded_event()
    return bus.send(topic, value, key=key, headers=headers, partition=0)


def test_writer__returns_once_the_broker_acknowledged_the_dead_letter(bus, topic):
    """write() produces the original key, value and headers plus provenance, and returns once acknowledged."""
    original = stored_message(bus, topic)
    writer = DeadLetterWriter(get_settings())
    writer.write("letters", original, [("dead_letter_group", b"g")])
    (letter,) = bus.messages("letters")
    assert (letter.key(), letter.value()) == (original.key(), original.value())
    assert letter.headers() == [*original.headers(), ("dead_letter_group", b"g")]


def test_writer__a_refused_dead_letter_raises_naming_the_topic(bus, topic):
    """A dead letter the broker refuses raises DeadLetterError, so the original is not skipped."""
    original = stored_message(bus, topic)
    bus.fail_next_delivery(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), topic="letters")
    with pytest.raises(DeadLetterError, match=r"dead letter to letters failed: .*Topic authorization failed"):
        DeadLetterWriter(get_settings()).write("letters", original, [])


def test_writer__a_letter_the_broker_never_takes__raises_once_librdkafka_gives_up(bus, topic, settings):
    """With the broker down the letter times out (message.timeout.ms): DeadLetterError, nothing written."""
    settings.EVENT_BUS_KAFKA_PRODUCER_CONFIG = {"message.timeout.ms": 100}
    original = stored_message(bus, topic)
    with bus.outage(), pytest.raises(DeadLetterError, match=r"dead letter to letters failed: .*Message timed out"):
        DeadLetterWriter(get_settings()).write("letters", original, [])
    assert bus.messages("letters") == []


def test_writer__after_a_fatal_client_error_the_next_write_uses_a_new_client(bus, topic, caplog):
    """A fatal error on the dead-letter producer is answered by a new client; the next write succeeds."""
    original = stored_message(bus, topic)
    writer = DeadLetterWriter(get_settings())
    writer.write("letters", original, [])
    bus.raise_client_error(KafkaError(KafkaError._FATAL, "sequence error", fatal=True), kind="producer")
    with pytest.raises(DeadLetterError, match="fatal"):
        writer.write("letters", original, [])  # serves the error; the dead client refuses the write
    writer.write("letters", original, [])
    assert len(bus.producers) == 2 and len(bus.messages("letters")) == 2
    assert "Fatal Kafka dead-letter producer error, the client will be rebuilt" in caplog.text


# -- reading -----------------------------------------------------------------------------------


def test_read_dead_letters__group_without_dead_letter_topic__is_an_empty_list(bus, topic):
    """A group that never dead-lettered anything has no dead-letter topic: that reads as no dead letters."""
    assert read_dead_letters(topic, "never-failed") == []


def test_read_dead_letters__a_shared_topic_yields_only_this_groups_letters(bus, topic, receiver, settings, caplog):
    """With one dead-letter topic for all groups, each group reads back only its own dead letters."""
    caplog.set_level(logging.INFO, logger="edx_event_bus_kafka")
    settings.EVENT_BUS_KAFKA_DEAD_LETTER_TOPIC = "{topic}-all-dead-letters"
    settings.EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS = 1
    key, value, headers, metadata = encoded_event()
    bus.send(topic, value, key=key, headers=headers, partition=0)
    receiver.always_fail = True
    for group in ("first", "second"):
        run_until(KafkaEventConsumer(topic, group), lambda group=group: bus.committed(group, topic) == {0: 1})
    (letter,) = read_dead_letters(topic, "first")
    assert (letter.group, letter.event_id, letter.attempts) == ("first", str(metadata.id), 1)
    assert f"Ignored 1 messages of {topic}-all-dead-letters from other groups or topics" in caplog.text


def test_latest_per_event__an_event_dead_lettered_twice_is_redriven_once():
    """An event redriven and dead-lettered again has two dead letters: only the later one is re-published."""
    def letter(event_id: str, offset: int, when: str) -> DeadLetter:
        return DeadLetter(partition=0, offset=offset, key=None, value=None, headers=[("ce_id", event_id.encode())],
                          provenance={"time": when})

    first = letter("a", 0, "2026-11-28T10:00:00")
    other = letter("b", 1, "2026-11-28T10:01:00")
    again = letter("a", 2, "2026-11-28T10:02:00")
    assert latest_per_event([first, other, again]) == [other, again]


# -- re-driving --------------------------------------------------------------------------------


def test_redrive__lists_dry_runs_and_republishes_one_event_that_only_its_group_processes(bus, topic, receiver,
                                                                                          settings):
    """--list shows the group's dead letters, --dry-run sends nothing, --event-id re-publishes one copy for it."""
    chosen, other = dead_letter_all(bus, topic, "failing", receiver, settings, 2)
    listing = command("-t", topic, "-g", "failing", "--list")
    assert chosen in listing and other in listing and "2 dead letters of group failing" in listing
    assert "builtins.RuntimeError" in listing and "ReceiverError" not in listing, listing  # the real exception
    dry = command("-t", topic, "-g", "failing", "--dry-run", "--event-id", chosen)
    assert f"Dry run: would re-publish 1 dead letter to {topic} for group failing" in dry
    assert redriven_copies(bus, topic) == []
    assert f"Re-published 1 dead letter to {topic}" in command("-t", topic, "-g", "failing", "--event-id", chosen)
    (copy,) = redriven_copies(bus, topic)
    (original,) = [message for message in bus.messages(topic) if header(message, "ce_id") == chosen
                   and message is not copy]
    assert (copy.key(), copy.value()) == (original.key(), original.value())
    assert copy.headers() == [*original.headers(), (REDRIVE_GROUP, b"failing")]
    for group in ("failing", "bystander"):
        run_until(KafkaEventConsumer(topic, group),
                  lambda group=group: sum(bus.committed(group, topic).values()) == len(bus.messages(topic)))
    assert [str(call["metadata"].id) for call in receiver.calls].count(chosen) == 2  # the copy, and the bystander
    assert sorted(str(call["metadata"].id) for call in receiver.calls) == sorted([chosen, chosen, other])


def test_redrive__selects_by_partition_and_offsets_and_requires_a_selector_or_all(bus, topic, receiver, settings):
    """--partition and --offsets pick dead letters by original position; no selector without --all is refused."""
    dead_letter_all(bus, topic, "failing", receiver, settings, 5)
    letters = read_dead_letters(topic, "failing")
    by_partition = defaultdict(list)
    for letter in letters:
        by_partition[letter.original_partition].append(letter)
    busiest, on_busiest = max(by_partition.items(), key=lambda item: len(item[1]))
    first, second = sorted(letter.original_offset for letter in on_busiest)[:2]

    def planned(*selectors: str) -> set[str]:
        report = json.loads(command("-t", topic, "-g", "failing", "--dry-run", "--json", *selectors))
        assert report["action"] == "dry_run" and report["republished"] == len(report["dead_letters"])
        return {entry["event_id"] for entry in report["dead_letters"]}

    assert planned("--partition", str(busiest), "--offsets", f"{second}-") == {
        letter.event_id for letter in on_busiest if letter.original_offset >= second}
    assert planned("--offsets", f"0-{first}") == {letter.event_id for letter in letters
                                                   if letter.original_offset <= first}
    assert planned("--all") == {letter.event_id for letter in letters}
    assert f"Re-published {len(on_busiest)} dead letter" in command("-t", topic, "-g", "failing", "--partition",
                                                                    str(busiest))
    assert {header(m, "ce_id") for m in redriven_copies(bus, topic)} == {letter.event_id for letter in on_busiest}
    for bad, message in (((), "without --all"),
                         (("--offsets", "9-2"), "ends before it starts"),
                         (("--partition", "-1"), "not a partition number"),
                         (("--all", "--partition", "1"), "cannot be combined"),
                         (("--event-id", "no-such-event"), "matches event id(s) no-such-event")):
        with pytest.raises(CommandError, match=re.escape(message)):
            command("-t", topic, "-g", "failing", *bad)
    assert len(redriven_copies(bus, topic)) == len(on_busiest), "a refused redrive re-published something"


def letter_for(event_id: str, topic: str, group: str = "failing") -> DeadLetter:
    return DeadLetter(partition=0, offset=len(event_id), key=b"key", value=b"value",
                      headers=[("ce_id", event_id.encode())], provenance={"original_topic": topic, "group": group})


def test_redrive__a_copy_the_broker_refuses__raises_naming_it_and_counts_the_rest(bus, topic):
    """A refused copy makes redrive raise RepublishError naming that dead letter; the other copy is delivered."""
    bus.fail_next_delivery(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), topic="forbidden")
    with pytest.raises(RepublishError, match=r"1 of 2 dead letters were not re-published \(1 were\)") as raised:
        redrive([letter_for("ok-id", topic), letter_for("refused-id", "forbidden")], "failing")
    assert raised.value.delivered == 1
    assert [(failed.event_id, "authorization" in reason.lower()) for failed, reason in raised.value.failures] == [
        ("refused-id", True)]
    assert [header(m, "ce_id") for m in redriven_copies(bus, topic)] == ["ok-id"]


def test_redrive__copies_the_broker_never_takes__are_each_reported(bus, topic, settings):
    """With the broker down every copy times out (message.timeout.ms); each is named, none was delivered."""
    settings.EVENT_BUS_KAFKA_PRODUCER_CONFIG = {"message.timeout.ms": 100}
    with bus.outage(), pytest.raises(RepublishError) as raised:
        redrive([letter_for("a", topic), letter_for("b", topic)], "failing")
    assert raised.value.delivered == 0
    assert [(failed.event_id, "timed out" in reason) for failed, reason in raised.value.failures] == [
        ("a", True), ("b", True)]
    assert bus.messages(topic) == []


def test_redrive__a_dead_letter_without_its_original_topic__sends_nothing(bus, topic):
    """Dead letters that do not name their original topic are refused before anything is sent."""
    nameless = DeadLetter(partition=0, offset=7, key=None, value=b"v", headers=[], provenance={})
    with pytest.raises(RedriveError, match="0:7 do not name their original topic"):
        redrive([letter_for("a", topic), nameless], "failing")
    assert bus.producers == []
