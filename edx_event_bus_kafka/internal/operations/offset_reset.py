"""Moving a consumer group's committed offsets on one topic (``./manage.py reset_event_bus_offsets``).

The one-shot form of replaying (or skipping ahead), as ``kafka-consumer-groups --reset-offsets``
offers it: :func:`plan_reset` works out, per partition, where the group is and where it would go,
and changes nothing; :func:`execute_reset` commits the new offsets for the group through the admin
API, and only while the group has no active member. A running worker would overwrite the new
offsets with its own position at its next commit, and the broker refuses offset commits from
outside an active group anyway.

Each partition's commit metadata is kept as it was, so the marker a worker started with
``--offset-time`` leaves there (see ``consume.replay``) survives a reset: restarting such a worker
does not undo the reset by replaying again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from edx_event_bus_kafka.internal.errors import GroupActiveError, OffsetResetError, UnknownTopicError
from edx_event_bus_kafka.internal.kafka.clients import new_admin
from edx_event_bus_kafka.internal.kafka.protocols import AdminClientLike
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch, list_topics_watched
from edx_event_bus_kafka.internal.settings.clients import (
    OFFSET_RESET_FROM_BEGINNING,
    admin_client_config,
    consumer_client_config,
    get_full_topic,
)
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, get_settings

__all__ = ["TIMEOUT_SEC", "Member", "PartitionPlan", "ResetPlan", "ResetTarget", "execute_reset", "plan_reset"]

#: Default seconds to wait for each answer from the broker.
TIMEOUT_SEC = 10.0

TargetKind = Literal["datetime", "earliest", "latest", "shift", "offset"]


# Commit errors that mean a member joined the group between planning and committing.
_GROUP_BECAME_ACTIVE = {"UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS", "FENCED_INSTANCE_ID",
                        "STALE_MEMBER_EPOCH"}


@dataclass(frozen=True)
class ResetTarget:
    """Where to move the group: a time, the earliest or latest offset, a shift, or an absolute offset.

    ``when`` is set for ``datetime`` (timezone-aware), ``number`` for ``shift`` and ``offset``.
    """

    kind: TargetKind
    when: datetime | None = None
    number: int | None = None

    def describe(self) -> str:
        """How the plan names the target, e.g. ``the first message at or after 2026-11-28T09:00:00+00:00``."""
        if self.kind == "datetime":
            assert self.when is not None
            return f"the first message at or after {self.when.isoformat()}"
        if self.kind == "shift":
            return f"the committed offset shifted by {self.number:+d}"
        if self.kind == "offset":
            return f"offset {self.number}"
        return f"the {self.kind} offset"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        value: Any = self.when.isoformat() if self.when is not None else self.number
        return {"kind": self.kind, "value": value, "description": self.describe()}


@dataclass(frozen=True)
class Member:
    """An active member of the group, as the broker describes it."""

    member_id: str
    client_id: str
    host: str
    group_instance_id: str | None
    partitions: list[str]  # "topic:partition" of everything assigned to it, any topic

    def describe(self) -> str:
        """One line: member id, client id, host and assigned partitions."""
        assigned = ",".join(self.partitions) or "none"
        return f"member_id={self.member_id} client_id={self.client_id} host={self.host} partitions={assigned}"


@dataclass
class PartitionPlan:
    """One partition: the group's committed offset now, the offset it moves to, the partition's range."""

    partition: int
    current: int | None  # None: the group has never committed on this partition
    new: int
    earliest: int
    end: int
    note: str | None = None
    metadata: str | None = field(default=None, repr=False)  # the commit's metadata, kept when moving

    @property
    def lag_after(self) -> int:
        """Messages the group will have to consume on this partition after the move."""
        return max(0, self.end - self.new)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"partition": self.partition, "current": self.current, "new": self.new, "earliest": self.earliest,
                "end": self.end, "lag_after": self.lag_after, "note": self.note}


@dataclass
class ResetPlan:
    """The move of ``group``'s offsets on ``topic`` (full name), planned or done."""

    topic: str
    group: str
    target: ResetTarget
    group_state: str
    members: list[Member]
    partitions: list[PartitionPlan]
    executed: bool = False

    @property
    def active(self) -> bool:
        """Whether the group has members (or a state other than empty or dead), so it must not be moved."""
        return bool(self.members) or self.group_state not in {"EMPTY", "DEAD"}

    @property
    def total_lag_after(self) -> int:
        """Messages the group will have to consume after the move, over the planned partitions."""
        return sum(p.lag_after for p in self.partitions)

    def refusal(self) -> str:
        """Why the group must not be moved now, naming its members."""
        if self.members:
            count = len(self.members)
            who = "; ".join(member.describe() for member in self.members)
            return (f"group {self.group!r} has {count} active member{'' if count == 1 else 's'}: {who}. "
                    "Stop its workers first (a killed worker stays a member until its session times out)")
        return (f"group {self.group!r} is {self.group_state} although the broker names no member; stop its workers "
                "first and try again")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return {
            "topic": self.topic, "group": self.group, "target": self.target.as_dict(), "executed": self.executed,
            "group_state": self.group_state, "active": self.active,
            "members": [vars(member) for member in self.members],
            "partitions": [p.as_dict() for p in self.partitions], "total_lag_after": self.total_lag_after,
        }


def plan_reset(topic: str, group: str, target: ResetTarget, *, partitions: list[int] | None = None,
               settings: EventBusSettings | None = None, timeout: float = TIMEOUT_SEC) -> ResetPlan:
    """Where ``group`` is on ``topic`` (without prefix) and where ``target`` would move it; reads only.

    ``partitions`` limits the plan to those partition numbers (default: all). Offsets outside what the
    partition holds are brought to its earliest or end offset, with a note.

    Raises:
        UnknownTopicError: the topic, or one of ``partitions``, does not exist.
        BrokerRefusedError: the broker refused our credentials or TLS setup.
        OffsetResetError: the broker could not be reached or did not answer within ``timeout``.

    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    settings = settings or get_settings()
    full_topic = get_full_topic(topic, settings)
    admin, watch = _admin(settings)
    numbers = _partition_numbers(admin, watch, full_topic, timeout, settings.bootstrap_servers)
    chosen = sorted(set(partitions)) if partitions else numbers
    missing = [number for number in chosen if number not in numbers]
    if missing:
        raise UnknownTopicError(f"topic {full_topic!r} has no partition {', '.join(map(str, missing))} "
                                f"(it has {_ranges(numbers)})")
    places = [TopicPartition(full_topic, number) for number in chosen]
    request = [ConsumerGroupTopicPartitions(group, places)]
    found = _result(admin.list_consumer_group_offsets(request, request_timeout=timeout)[group], timeout, watch,
                    f"the committed offsets of group {group!r}")
    committed = {tp.partition: tp for tp in found.topic_partitions}
    earliest = _offsets(admin, {tp: OffsetSpec.earliest() for tp in places}, timeout, watch, "earliest offsets")
    end = _offsets(admin, {tp: OffsetSpec.latest() for tp in places}, timeout, watch, "end offsets")
    at_time: dict[int, int] = {}
    if target.kind == "datetime":
        assert target.when is not None
        stamp_ms = int(target.when.timestamp() * 1000)
        at_time = _offsets(admin, {tp: OffsetSpec.for_timestamp(stamp_ms) for tp in places}, timeout, watch,
                           f"offsets of {target.when.isoformat()}")
    state, members = _describe_group(admin, group, timeout, watch)
    starts_at_beginning = str(consumer_client_config(group, settings).get("auto.offset.reset", "latest")).lower() \
        in OFFSET_RESET_FROM_BEGINNING
    rows = []
    for number in chosen:
        entry = committed.get(number)
        current = entry.offset if entry is not None and entry.offset >= 0 else None
        row = PartitionPlan(number, current, 0, earliest[number], end[number],
                            metadata=entry.metadata if entry is not None else None)
        _place(row, target, at_time.get(number), starts_at_beginning)
        rows.append(row)
    return ResetPlan(full_topic, group, target, state, members, rows)


def execute_reset(plan: ResetPlan, *, settings: EventBusSettings | None = None,
                  timeout: float = TIMEOUT_SEC) -> ResetPlan:
    """Commit ``plan``'s new offsets for its group; refuses while the group is active.

    Raises:
        GroupActiveError: the group has active members (named in the message); nothing was changed.
        OffsetResetError: the broker did not take the new offsets (or some of them: the message names
            which), for instance because a worker joined the group meanwhile.
        BrokerRefusedError: the broker refused our credentials or TLS setup.

    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    if plan.active:
        raise GroupActiveError(f"Refusing to move the offsets: {plan.refusal()}", plan.members)
    admin, watch = _admin(settings or get_settings())
    offsets = [TopicPartition(plan.topic, p.partition, p.new, p.metadata or "") for p in plan.partitions]
    request = [ConsumerGroupTopicPartitions(plan.group, offsets)]
    done = _result(admin.alter_consumer_group_offsets(request, request_timeout=timeout)[plan.group], timeout, watch,
                   f"the new offsets of group {plan.group!r}")
    failed = [tp for tp in done.topic_partitions if tp.error is not None]
    if failed:
        names = {tp.error.name() for tp in failed}
        why = "; ".join(f"partition {tp.partition}: {tp.error.name()}: {tp.error.str()}" for tp in failed)
        hint = " (a worker joined the group meanwhile: stop it and try again)" if names & _GROUP_BECAME_ACTIVE else ""
        moved = len(plan.partitions) - len(failed)
        raise OffsetResetError(f"the broker did not take the new offsets of group {plan.group!r} on {plan.topic!r}"
                               f"{hint}: {why}; {moved} other partition(s) were moved")
    plan.executed = True
    return plan


def _place(row: PartitionPlan, target: ResetTarget, at_time: int | None, starts_at_beginning: bool) -> None:
    """Set ``row.new`` (and a note) for ``target``, kept within the partition's earliest and end offsets."""
    if target.kind == "earliest":
        row.new = row.earliest
        return
    if target.kind == "latest":
        row.new = row.end
        return
    if target.kind == "datetime":
        if at_time is None or at_time < 0:
            row.new, row.note = row.end, "no message at or after that time: moved to the end"
        else:
            row.new = at_time
        return
    assert target.number is not None
    if target.kind == "offset":
        wanted = target.number
    elif row.current is not None:
        wanted = row.current + target.number
    else:
        base = row.earliest if starts_at_beginning else row.end
        wanted = base + target.number
        row.note = f"no commit: shifted from the {'earliest' if starts_at_beginning else 'end'} (auto.offset.reset)"
    row.new = min(max(wanted, row.earliest), row.end)
    if wanted > row.end:
        row.note = _joined(row.note, f"{wanted} is past the end: moved to the end")
    elif wanted < row.earliest:
        row.note = _joined(row.note, f"{wanted} is before the earliest: moved to the earliest")


def _joined(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _admin(settings: EventBusSettings) -> tuple[AdminClientLike, RefusalWatch]:
    """An admin client built from the settings, and the watch on its refusals."""
    if not settings.bootstrap_servers:
        raise OffsetResetError("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set: there is no broker to ask")
    watch = RefusalWatch("admin client")
    return new_admin(admin_client_config(settings), error_cb=watch.seen), watch


def _partition_numbers(admin: AdminClientLike, watch: RefusalWatch, full_topic: str, timeout: float,
                       bootstrap: str | None) -> list[int]:
    from confluent_kafka import KafkaException

    try:
        # All topics, not the one: a metadata request naming a topic from an admin client lets a broker
        # with auto-creation on create it.
        metadata = list_topics_watched(admin, watch, timeout)
    except KafkaException as error:
        raise OffsetResetError(f"could not reach the brokers at {bootstrap or '?'} within {timeout:g} s "
                               f"({_reason(error)}); check EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS") from None
    found = metadata.topics.get(full_topic)
    if found is None or found.error is not None or not found.partitions:
        raise UnknownTopicError(f"topic {full_topic!r} does not exist")
    return sorted(found.partitions)


def _offsets(admin: AdminClientLike, specs: dict[Any, Any], timeout: float, watch: RefusalWatch,
             what: str) -> dict[int, int]:
    """``list_offsets`` of ``specs``, by partition number (read-committed, as our consumers read)."""
    from confluent_kafka import IsolationLevel

    futures = admin.list_offsets(specs, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout)
    return {tp.partition: _result(future, timeout, watch, what).offset for tp, future in futures.items()}


def _describe_group(admin: AdminClientLike, group: str, timeout: float,
                    watch: RefusalWatch) -> tuple[str, list[Member]]:
    description = _result(admin.describe_consumer_groups([group], request_timeout=timeout)[group], timeout, watch,
                          f"the members of group {group!r}")
    members = []
    for member in description.members:
        assigned = member.assignment.topic_partitions if member.assignment is not None else []
        members.append(Member(member.member_id, member.client_id, member.host, member.group_instance_id,
                              [f"{tp.topic}:{tp.partition}" for tp in assigned]))
    return description.state.name, members


def _result(future: Any, timeout: float, watch: RefusalWatch, what: str) -> Any:
    """A future's result; a broker error, refusal or silence becomes one clear error naming ``what``."""
    from confluent_kafka import KafkaException

    try:
        return future.result(timeout=timeout + 5)  # librdkafka ends the request at ``timeout``: a safety net
    except KafkaException as error:
        watch.check()
        raise OffsetResetError(f"could not read or write {what}: {_reason(error)}") from None
    except TimeoutError:
        watch.check()
        raise OffsetResetError(f"no answer about {what} within {timeout:g} s") from None


def _reason(error: Exception) -> str:
    """``NAME: description`` of a ``KafkaException``, rather than its ``KafkaError{...}`` repr."""
    from confluent_kafka import KafkaError

    cause = error.args[0] if error.args else None
    return f"{cause.name()}: {cause.str()}" if isinstance(cause, KafkaError) else str(error)


def _ranges(numbers: list[int]) -> str:
    """``0-5`` for consecutive partition numbers, else the list."""
    if numbers and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"partitions {numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else f"partition {numbers[0]}"
    return "partitions " + ", ".join(map(str, numbers))
