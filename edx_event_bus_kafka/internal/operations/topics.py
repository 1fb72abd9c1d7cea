"""Which topics the event bus needs, and creating the missing ones on the broker.

Managed Kafka usually has topic auto-creation off, and an auto-created topic gets the broker's
default partition count, not ours. Consumers also write to a dead-letter topic per group, which must
exist before the first failure. So operators create topics up front: :func:`planned_topics` says
which, :func:`ensure_topics` creates the missing ones. Existing topics are never altered (adding
partitions moves keys to other partitions: an operator's call), only reported, with a warning when
they have fewer partitions than planned.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from django.conf import settings as django_settings

from edx_event_bus_kafka.internal.dead_letters import writer as dead_letter
from edx_event_bus_kafka.internal.errors import BrokerRefusedError, ConfigurationError, TopicAdminError
from edx_event_bus_kafka.internal.kafka.clients import new_admin
from edx_event_bus_kafka.internal.kafka.protocols import AdminClientLike
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch, list_topics_watched
from edx_event_bus_kafka.internal.settings.clients import admin_client_config, get_full_topic
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings

__all__ = ["Kind", "Status", "TopicAdminError", "TopicPlan", "TopicResult", "ensure_topics", "planned_topics",
           "topic_name_problem"]

Kind = Literal["events", "dead-letter"]
Status = Literal["created", "exists", "would-create", "unknown", "failed"]

# Kafka's rule for topic names. Some brokers (the embedded one among them) accept any name, so we
# check it ourselves: an illegal name fails the same way everywhere, before anything is sent.
_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


@dataclass(frozen=True)
class TopicPlan:
    """A topic as it should be created; ``replication_factor`` ``None`` means the broker's default."""

    name: str
    kind: Kind
    partitions: int
    replication_factor: int | None
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicResult:
    """What happened to one planned topic; ``current_*`` describe an existing topic as found."""

    plan: TopicPlan
    status: Status
    current_partitions: int | None = None
    current_replication_factor: int | None = None
    warning: str | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        """The topic name on the broker."""
        return self.plan.name

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description, the plan's fields first."""
        return {**asdict(self.plan), **{key: value for key, value in asdict(self).items() if key != "plan"}}


def topic_name_problem(name: str) -> str | None:
    """Why Kafka would refuse ``name`` as a topic name, or ``None`` when it is legal."""
    if _LEGAL_TOPIC.fullmatch(name) and name not in {".", ".."}:
        return None
    return "invalid topic name: use 1 to 249 ASCII letters, digits, '.', '_' or '-' (not '.' or '..' alone)"


def _enabled_topics(producer_config: Any) -> list[str]:
    """Base topics with at least one enabled entry, in the order the setting names them."""
    shape = "{topic: {'event_key_field': ..., 'enabled': True}}"
    if not isinstance(producer_config, Mapping):
        raise ConfigurationError([f"EVENT_BUS_PRODUCER_CONFIG must be a dict of event type to {shape}."])
    topics: list[str] = []
    for event_type, entries in producer_config.items():
        if not isinstance(entries, Mapping) or not all(isinstance(entry, Mapping) for entry in entries.values()):
            raise ConfigurationError([f"EVENT_BUS_PRODUCER_CONFIG[{event_type!r}] must be a dict {shape}."])
        # openedx-events publishes only when "enabled" is exactly True: plan the same topics.
        topics.extend(topic for topic, entry in entries.items() if entry.get("enabled") is True)
    return list(dict.fromkeys(topics))


def planned_topics(
    settings: EventBusSettings, *, groups: Iterable[str] = (), extra_topics: Iterable[str] = (),
    producer_config: Mapping[str, Any] | None = None,
) -> list[TopicPlan]:
    """The service's event topics, then the dead-letter topic of each group on each of them.

    Event topics are those enabled in ``EVENT_BUS_PRODUCER_CONFIG`` (or ``producer_config``) plus
    ``extra_topics``; all are base names, given ``EVENT_BUS_TOPIC_PREFIX``. Duplicates are dropped.

    Raises:
        ConfigurationError: ``EVENT_BUS_PRODUCER_CONFIG`` does not have the shape openedx-events uses.

    """
    if producer_config is None:
        producer_config = getattr(django_settings, "EVENT_BUS_PRODUCER_CONFIG", {})
    base_topics = dict.fromkeys([*_enabled_topics(producer_config), *extra_topics])
    full_topics = [get_full_topic(topic, settings) for topic in base_topics]
    wanted: list[tuple[str, Kind, int | None]] = [(topic, "events", settings.topic_retention_ms)
                                                  for topic in full_topics]
    wanted += [(dead_letter.dead_letter_topic(topic, group, settings), "dead-letter", settings.dead_letter_retention_ms)
               for topic in full_topics for group in dict.fromkeys(groups)]
    plans: dict[str, TopicPlan] = {}
    for name, kind, retention_ms in wanted:
        config = {} if retention_ms is None else {"retention.ms": str(retention_ms)}
        plans.setdefault(name, TopicPlan(name, kind, settings.topic_partitions, settings.topic_replication_factor,
                                         config))
    return list(plans.values())


def ensure_topics(
    plans: Iterable[TopicPlan], *, dry_run: bool = False, timeout: float = 30,
    settings: EventBusSettings | None = None,
) -> list[TopicResult]:
    """Create the planned topics that do not exist yet; report on every one, in plan order.

    Idempotent: existing topics are reported as ``exists`` and left alone. A topic that cannot be
    created (illegal name, authorization failure on managed Kafka, ...) is ``failed`` with the reason,
    and the others are still created. ``dry_run`` only lists topics; when that fails it still reports
    the plan, with status ``unknown``.

    Raises:
        TopicAdminError: not a dry run, and the existing topics could not be listed; or the broker
            refused our credentials or TLS setup (dry run or not).

    """
    plans = list(plans)
    results: dict[str, TopicResult] = {}
    for plan in plans:
        problem = topic_name_problem(plan.name)
        if problem:
            results[plan.name] = TopicResult(plan, "failed", error=problem)
    valid = [plan for plan in plans if plan.name not in results]
    admin, existing, unreachable = _list_existing(settings, timeout) if valid else (None, {}, None)
    if unreachable and not dry_run:
        raise TopicAdminError(f"{unreachable}; no topic was created")
    missing: list[TopicPlan] = []
    for plan in valid:
        if unreachable:
            results[plan.name] = TopicResult(plan, "unknown", warning=f"existence unknown: {unreachable}")
        elif plan.name in existing:
            results[plan.name] = _existing(plan, existing[plan.name])
        elif dry_run:
            results[plan.name] = TopicResult(plan, "would-create")
        else:
            missing.append(plan)
    if missing and admin is not None:  # missing topics were found by listing, with this client
        results.update(_create(missing, admin, timeout))
    return [results[plan.name] for plan in plans]


def _list_existing(settings: EventBusSettings | None,
                   timeout: float) -> tuple[AdminClientLike | None, dict[str, Any], str | None]:
    """The admin client, the existing topics' metadata by name, and why they could not be listed."""
    config = admin_client_config(settings)
    watch = RefusalWatch("admin client")
    if "bootstrap.servers" not in config:
        return None, {}, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set"
    admin = new_admin(config, error_cb=watch.seen)  # returned and kept: a collected client cancels its requests
    try:
        return admin, list_topics_watched(admin, watch, timeout).topics, None
    except BrokerRefusedError as error:
        raise TopicAdminError(f"{error}; nothing was checked or created") from None
    except Exception as error:  # noqa: BLE001 -- KafkaException or a client error: report either
        return admin, {}, f"could not list topics on {config.get('bootstrap.servers', 'the broker')}: {_reason(error)}"


def _reason(error: Exception) -> str:
    """``NAME: description`` of a ``KafkaException``, rather than its ``KafkaError{...}`` repr."""
    from confluent_kafka import KafkaError

    cause = error.args[0] if error.args else None
    return f"{cause.name()}: {cause.str()}" if isinstance(cause, KafkaError) else str(error)


def _existing(plan: TopicPlan, metadata: Any) -> TopicResult:
    count = len(metadata.partitions)
    replicas = [len(partition.replicas) for partition in metadata.partitions.values()]
    warning = None
    if count < plan.partitions:
        warning = (f"has {count} partition(s), fewer than the planned {plan.partitions}, so fewer workers of a group "
                   "can share its load; left unchanged (adding partitions moves keys to other partitions)")
    return TopicResult(plan, "exists", current_partitions=count,
                       current_replication_factor=min(replicas, default=None), warning=warning)


def _create(plans: list[TopicPlan], admin: AdminClientLike, timeout: float) -> dict[str, TopicResult]:
    """Create ``plans`` in one request, then settle each topic's outcome on its own."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    new_topics = [NewTopic(plan.name, num_partitions=plan.partitions, config=plan.config,
                           replication_factor=-1 if plan.replication_factor is None else plan.replication_factor)
                  for plan in plans]
    try:
        futures = admin.create_topics(new_topics, operation_timeout=timeout, request_timeout=timeout)
    except (KafkaException, ValueError, TypeError) as error:
        reason = f"create request refused: {_reason(error)}"
        return {plan.name: TopicResult(plan, "failed", error=reason) for plan in plans}
    results: dict[str, TopicResult] = {}
    for plan in plans:
        name = plan.name
        try:
            futures[name].result(timeout=timeout)
        except KafkaException as error:
            cause = error.args[0] if error.args else None
            if isinstance(cause, KafkaError) and cause.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                # Created meanwhile by someone else, or hidden from our listing by ACLs: it exists.
                results[name] = TopicResult(plan, "exists", warning="already existed (not seen when listing topics)")
            else:
                results[name] = TopicResult(plan, "failed", error=_reason(error))
        except TimeoutError:  # what concurrent.futures raises since Python 3.11
            results[name] = TopicResult(plan, "failed", error=f"no answer from the broker within {timeout} s")
        else:
            results[name] = TopicResult(plan, "created")
    return results
