"""Every Django setting of the event bus, declared once, read into one frozen, typed object.

Each setting is one field of :class:`EventBusSettings`: its type annotation, and a :func:`setting`
call with its Django name, default, parser and documentation. ``scripts/render_settings_doc.py``
renders ``docs/reference/settings.rst`` from these declarations (a test fails when it drifts).
Settings are read lazily (never at import time) by :func:`get_settings`, cached, and the cache, and
every cache registered with :func:`on_settings_changed`, is cleared when a test changes a setting.

Invalid values are reported all at once, each naming the setting, the value (redacted when secret)
and the fix. Secrets are wrapped in :class:`Secret`, whose ``repr`` and ``str`` never show them.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from edx_event_bus_kafka.internal.errors import ConfigurationError, InvalidSetting
from edx_event_bus_kafka.internal.settings.inbox import DeduplicationScope, consumer_deduplication, optional_seconds
from edx_event_bus_kafka.internal.settings.librdkafka_options import check_librdkafka_options
from edx_event_bus_kafka.internal.settings.parsers import (
    Parser,
    bootstrap_servers,
    choice,
    database_alias,
    delivery_mode,
    delivery_mode_overrides,
    flag,
    librdkafka_options,
    number,
    optional_count,
    optional_secret,
    optional_text,
    positive_int,
    registry_url,
    secret,
    text,
    topic_template,
)
from edx_event_bus_kafka.internal.settings.secrets import Secret, redact_options, redact_url

__all__ = ["SETTING_SPECS", "EventBusSettings", "Secret", "get_settings", "on_settings_changed", "settings_problems"]

_SPEC = "edx_event_bus_kafka.setting"
_UNSET = object()


@dataclass(frozen=True)
class SettingSpec:
    """One Django setting: its name (and older names still read), default, parser and documentation."""

    name: str
    attribute: str
    default: Any
    parse: Parser
    description: str
    secret: bool = False
    reference: bool = True  # also a setting of the reference implementation (by this name or an alias)
    aliases: tuple[str, ...] = ()

    def shown(self, value: Any) -> str:
        """The value as it may appear in an error message."""
        if self.secret:
            return "'********'" if value else repr(value)
        if isinstance(value, Mapping):
            return repr(redact_options(value))
        if isinstance(value, str) and "://" in value:
            return repr(redact_url(value))
        return repr(value)


def setting(name: str, default: Any, parse: Parser, description: str, *, secret: bool = False,
            reference: bool = True, aliases: tuple[str, ...] = ()) -> Any:
    """The declaration of one setting, as a field of :class:`EventBusSettings` (see the module docstring)."""
    declared = {"name": name, "default": default, "parse": parse, "description": description, "secret": secret,
                "reference": reference, "aliases": aliases}
    return field(metadata={_SPEC: declared})


# ---------------------------------------------------------------------------------------------
# The settings. Keep the reference's names, defaults and meanings; add new ones at the end.

@dataclass(frozen=True)
class EventBusSettings:
    """The validated settings. Build it with :func:`get_settings`, never directly."""

    bootstrap_servers: str | None = setting(
        "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", None, bootstrap_servers,
        "Comma-separated ``host:port`` list of Kafka brokers to bootstrap from. Required for "
        "producing and consuming; when unset, ``create_producer()`` returns ``None`` and events are "
        "not sent to the bus.",
    )
    schema_registry_url: str | None = setting(
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", None, registry_url,
        "URL of a Confluent-compatible Avro schema registry. When set, messages use the Confluent "
        "wire format (magic byte, schema id) and schemas are registered under "
        "``{full_topic}-{record name}``; this is what services running the reference "
        "implementation need. When unset, messages use Avro single-object encoding, which only "
        "this implementation reads.",
    )
    schema_registry_api_key: str = setting(
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY", "", text,
        "User name (API key) for basic authentication to the schema registry. Optional.",
    )
    schema_registry_api_secret: Secret = setting(
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET", "", secret,
        "Password (API secret) for basic authentication to the schema registry. Optional; never "
        "logged.",
        secret=True,
    )
    api_key: str | None = setting(
        "EVENT_BUS_KAFKA_API_KEY", None, optional_text,
        "SASL/PLAIN user name for the Kafka cluster. When both this and "
        "``EVENT_BUS_KAFKA_API_SECRET`` are set, clients use ``SASL_SSL`` with ``PLAIN``. For "
        "SCRAM, OAUTHBEARER or mTLS, use the ``*_CONFIG`` pass-through settings instead.",
    )
    api_secret: Secret | None = setting(
        "EVENT_BUS_KAFKA_API_SECRET", None, optional_secret,
        "SASL/PLAIN password for the Kafka cluster, used with ``EVENT_BUS_KAFKA_API_KEY``. Never "
        "logged.",
        secret=True,
    )
    topic_prefix: str | None = setting(
        "EVENT_BUS_TOPIC_PREFIX", None, optional_text,
        "Prefix added to every topic name, joined with a hyphen: with ``stage``, topic "
        "``user-login`` becomes ``stage-user-login``. Lets several environments share a cluster.",
    )
    poll_interval_sec: float = setting(
        "EVENT_BUS_KAFKA_POLL_INTERVAL_SEC", 1.0, number(minimum=0.0, inclusive=False),
        "How often, in seconds, a background thread polls the producer so delivery reports are "
        "handled even when no further events are sent.",
    )
    consumer_poll_timeout: float = setting(
        "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT", 1.0, number(minimum=0.0, inclusive=True),
        "How long, in seconds, one consumer poll waits for messages before the loop checks for "
        "shutdown and health.",
    )
    consumer_poll_failure_sleep: float = setting(
        "EVENT_BUS_KAFKA_CONSUMER_POLL_FAILURE_SLEEP", 1.0, number(minimum=0.0, inclusive=True),
        "How long, in seconds, the consumer waits after a failed poll before polling again, so a "
        "broker outage does not become a busy error loop.",
    )
    worker_consecutive_errors_limit: int | None = setting(
        "EVENT_BUS_KAFKA_WORKER_CONSECUTIVE_ERRORS_LIMIT", None, optional_count("no limit"),
        "After this many errors in a row (failed polls or failed messages; for ``relay_outbox``, "
        "failed publishing passes), a worker exits with a non-zero status so its supervisor restarts "
        "it with fresh state. ``None`` means no limit. The reference's name, "
        "``EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT``, is read too.",
        aliases=("EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT",),
    )
    consumers_enabled: bool = setting(
        "EVENT_BUS_KAFKA_CONSUMERS_ENABLED", True, flag,
        "Kill switch: when ``False``, ``consume_events`` exits at start without consuming.",
    )
    audit_logging_enabled: bool = setting(
        "EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED", True, flag,
        "When ``True``, log one INFO line per produced and per consumed event with topic, "
        "partition, offset, message id and key (never the event data).",
    )
    client_config: dict[str, Any] = setting(
        "EVENT_BUS_KAFKA_CLIENT_CONFIG", {}, librdkafka_options("producer", "consumer", "admin"),
        "Extra librdkafka options for every Kafka client the event bus makes (producers, consumers, "
        "dead-letter writer, outbox relay, admin and status commands), layered over ours: the place for "
        "connection security shared by all of them, for example SASL/SCRAM "
        "``{'security.protocol': 'SASL_SSL', 'sasl.mechanism': 'SCRAM-SHA-512', 'sasl.username': ..., "
        "'sasl.password': ...}`` or mutual TLS ``{'security.protocol': 'SSL', 'ssl.ca.location': ..., "
        "'ssl.certificate.location': ..., 'ssl.key.location': ...}``. The per-client dicts below are "
        "layered over it.",
        reference=False,
    )
    producer_config: dict[str, Any] = setting(
        "EVENT_BUS_KAFKA_PRODUCER_CONFIG", {}, librdkafka_options("producer"),
        "Extra librdkafka options for the producer, layered over ours (for example "
        "``{'compression.type': 'zstd', 'sasl.mechanism': 'SCRAM-SHA-512', ...}``). Unknown "
        "options are rejected at start-up.",
        reference=False,
    )
    consumer_config: dict[str, Any] = setting(
        "EVENT_BUS_KAFKA_CONSUMER_CONFIG", {}, librdkafka_options("consumer"),
        "Extra librdkafka options for consumers, layered over ours. ``group.id`` and the offset "
        "commit options are owned by the consumer and cannot be set here.",
        reference=False,
    )
    admin_config: dict[str, Any] = setting(
        "EVENT_BUS_KAFKA_ADMIN_CONFIG", {}, librdkafka_options("admin"),
        "Extra librdkafka options for admin clients (topic management, status), layered over ours.",
        reference=False,
    )
    delivery_mode: str = setting(
        "EVENT_BUS_KAFKA_DELIVERY_MODE", "on_commit", delivery_mode,
        "When a produced event is handed to Kafka. ``on_commit``: after the database transaction "
        "that is open when the event is sent commits (at once when none is open); an event of a "
        "rolled-back transaction is never published. ``immediate``: at once, as the reference "
        "does, even if the transaction later rolls back. ``outbox``: written to the outbox table "
        "in the caller's transaction and published by the relay, surviving broker outages and "
        "process crashes (run ``./manage.py relay_outbox``; needs the app's migration).",
        reference=False,
    )
    delivery_mode_overrides: dict[str, str] = setting(
        "EVENT_BUS_KAFKA_DELIVERY_MODE_OVERRIDES", {}, delivery_mode_overrides,
        "Per event type or per topic (without prefix) delivery mode, overriding "
        "``EVENT_BUS_KAFKA_DELIVERY_MODE``; an event type entry wins over a topic entry. Example: "
        "``{'org.openedx.learning.auth.session.login.completed.v1': 'immediate'}``.",
        reference=False,
    )
    transaction_database: str = setting(
        "EVENT_BUS_KAFKA_TRANSACTION_DATABASE", "default", database_alias,
        "Alias of the database whose transactions the ``on_commit`` delivery mode follows.",
        reference=False,
    )
    producer_flush_timeout_sec: float = setting(
        "EVENT_BUS_KAFKA_PRODUCER_FLUSH_TIMEOUT_SEC", 10.0, number(minimum=0.0, inclusive=True),
        "At process exit or SIGTERM, how long, in seconds, to wait for buffered events to be "
        "acknowledged. Events still unacknowledged afterwards are logged one by one with everything "
        "needed to re-send them.",
        reference=False,
    )
    producer_flush_on_sigterm: bool = setting(
        "EVENT_BUS_KAFKA_PRODUCER_FLUSH_ON_SIGTERM", True, flag,
        "Install a SIGTERM handler (main thread only) that flushes buffered events and then runs the "
        "handler that was installed before it, or the default action. Turn off if your process "
        "manager must own SIGTERM entirely; events are still flushed at normal exit.",
        reference=False,
    )
    outbox_batch_size: int = setting(
        "EVENT_BUS_KAFKA_OUTBOX_BATCH_SIZE", 200, positive_int,
        "Most outbox rows the relay publishes, waits for and marks in one database transaction.",
        reference=False,
    )
    outbox_poll_interval_sec: float = setting(
        "EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC", 1.0, number(minimum=0.0, inclusive=False),
        "How often, in seconds, an idle ``relay_outbox`` looks for new rows; also the first "
        "back-off after a broker or registry failure (it doubles up to 60 s).",
        reference=False,
    )
    outbox_publish_on_commit: bool = setting(
        "EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT", True, flag,
        "When ``True``, the producing process publishes its outbox rows itself right after the "
        "transaction commits (in a background thread), so events go out without waiting for the "
        "relay; the relay remains the safety net for rows this could not publish.",
        reference=False,
    )
    outbox_retention_sec: float = setting(
        "EVENT_BUS_KAFKA_OUTBOX_RETENTION_SEC", 7 * 24 * 3600.0, number(minimum=0.0, inclusive=True),
        "Published outbox rows older than this many seconds are deleted by the relay. ``0`` deletes "
        "them as soon as they are published.",
        reference=False,
    )
    outbox_delivery_timeout_sec: float = setting(
        "EVENT_BUS_KAFKA_OUTBOX_DELIVERY_TIMEOUT_SEC", 30.0, number(minimum=0.0, inclusive=False),
        "How long, in seconds, the relay waits for the broker to acknowledge a batch before "
        "leaving the unacknowledged rows pending for a later attempt.",
        reference=False,
    )
    consumer_failure_policy: str = setting(
        "EVENT_BUS_KAFKA_CONSUMER_FAILURE_POLICY", "dead_letter", choice("dead_letter", "log_and_skip"),
        "What a consumer does with a message it cannot process. ``dead_letter``: write it, with why, "
        "to the group's dead-letter topic and commit only once that is acknowledged. "
        "``log_and_skip``: the reference's behaviour, log the error and move on (the event is lost "
        "for this group).",
        reference=False,
    )
    consumer_retry_attempts: int = setting(
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS", 3, positive_int,
        "How many times in all a message whose receivers fail is tried before the failure policy "
        "applies. Unusable messages (bad headers, unknown type, undecodable) are not retried.",
        reference=False,
    )
    consumer_retry_backoff_sec: float = setting(
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_SEC", 1.0, number(minimum=0.0, inclusive=True),
        "Delay, in seconds, before the first retry of a failed message; it doubles for each further "
        "retry up to ``EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_MAX_SEC``. The worker keeps polling while "
        "a retry waits, so retries may take longer than ``max.poll.interval.ms``.",
        reference=False,
    )
    consumer_retry_backoff_max_sec: float = setting(
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_MAX_SEC", 30.0, number(minimum=0.0, inclusive=True),
        "Longest delay, in seconds, between two attempts at one message.",
        reference=False,
    )
    dead_letter_topic: str = setting(
        "EVENT_BUS_KAFKA_DEAD_LETTER_TOPIC", "{topic}-{group}-dead-letter", topic_template,
        "Name of a consumer group's dead-letter topic. ``{topic}`` is the consumed topic with its "
        "prefix, ``{group}`` the group id (characters Kafka does not allow become ``_``).",
        reference=False,
    )
    worker_shutdown_timeout_sec: float = setting(
        "EVENT_BUS_KAFKA_WORKER_SHUTDOWN_TIMEOUT_SEC", 30.0, number(minimum=0.0, inclusive=False),
        "After SIGTERM or SIGINT, how long, in seconds, a worker (``consume_events``, "
        "``relay_outbox``) may take to finish its current message or batch, commit and leave the "
        "group before it exits at once (status 4). The earlier name, "
        "``EVENT_BUS_KAFKA_CONSUMER_SHUTDOWN_TIMEOUT_SEC``, is read too.",
        reference=False, aliases=("EVENT_BUS_KAFKA_CONSUMER_SHUTDOWN_TIMEOUT_SEC",),
    )
    topic_partitions: int = setting(
        "EVENT_BUS_KAFKA_TOPIC_PARTITIONS", 3, positive_int,
        "Partitions of topics created by ``create_event_bus_topics`` (event topics and dead-letter "
        "topics). More partitions allow more workers per group; per-key order holds either way.",
        reference=False,
    )
    topic_replication_factor: int | None = setting(
        "EVENT_BUS_KAFKA_TOPIC_REPLICATION_FACTOR", None, optional_count("the broker's default"),
        "Replication factor of topics created by ``create_event_bus_topics``; ``None`` uses the "
        "broker's ``default.replication.factor``.",
        reference=False,
    )
    topic_retention_ms: int | None = setting(
        "EVENT_BUS_KAFKA_TOPIC_RETENTION_MS", None,
        optional_count("the broker's default", minus_one_means="keep forever"),
        "``retention.ms`` of event topics created by ``create_event_bus_topics``; ``None`` uses the "
        "broker's default, ``-1`` keeps messages forever.",
        reference=False,
    )
    dead_letter_retention_ms: int | None = setting(
        "EVENT_BUS_KAFKA_DEAD_LETTER_RETENTION_MS", -1,
        optional_count("the broker's default", minus_one_means="keep forever"),
        "``retention.ms`` of dead-letter topics created by ``create_event_bus_topics``; by default "
        "dead letters are kept until an operator deals with them (``-1``).",
        reference=False,
    )
    avro_fast_path: bool = setting(
        "EVENT_BUS_KAFKA_AVRO_FAST_PATH", True, flag,
        "Encode and decode event values with Python code generated per signal (several times faster, "
        "byte-identical to openedx-events' serializer; see decision 0008). ``False`` uses fastavro with "
        "openedx-events' own conversions for every event: the off switch should a new openedx-events "
        "release ever make the two paths disagree.",
        reference=False,
    )
    consumer_concurrency: int = setting(
        "EVENT_BUS_KAFKA_CONSUMER_CONCURRENCY", 1, positive_int,
        "Threads that process messages in each ``consume_events`` worker (``--concurrency``). ``1`` "
        "processes one message at a time in partition order, as the reference does (but a retry "
        "holds back only its own partition, and the worker keeps polling while it waits). Above 1, "
        "messages are processed concurrently in the order ``EVENT_BUS_KAFKA_CONSUMER_ORDERING`` keeps. "
        "For I/O-bound receivers (database, HTTP); CPU-bound ones gain nothing under the GIL.",
        reference=False,
    )
    consumer_ordering: str = setting(
        "EVENT_BUS_KAFKA_CONSUMER_ORDERING", "key", choice("key", "partition", "none"),
        "With concurrency above 1, which messages are never processed at the same time nor out of "
        "order (``--ordering``): ``key`` (the default: messages with the same key within a partition), "
        "``partition`` (all messages of a partition: one at a time per partition) or ``none``.",
        reference=False,
    )
    consumer_max_in_flight: int = setting(
        "EVENT_BUS_KAFKA_CONSUMER_MAX_IN_FLIGHT", 1000, positive_int,
        "The most messages a worker holds (being processed or waiting for "
        "their turn) before it pauses fetching; it resumes at half. Bounds memory under any backlog.",
        reference=False,
    )
    consumer_batch_size: int = setting(
        "EVENT_BUS_KAFKA_CONSUMER_BATCH_SIZE", 500, positive_int,
        "Most messages one consumer poll returns (fetching pauses anyway at "
        "``EVENT_BUS_KAFKA_CONSUMER_MAX_IN_FLIGHT`` messages held).",
        reference=False,
    )
    consumer_commit_every_messages: int = setting(
        "EVENT_BUS_KAFKA_CONSUMER_COMMIT_EVERY_MESSAGES", 100, positive_int,
        "Offsets are committed (asynchronously) at the latest once this many messages are done, or "
        "``EVENT_BUS_KAFKA_CONSUMER_COMMIT_INTERVAL_SEC`` after a message was done, whichever comes "
        "first (and on rebalance and shutdown, waiting for the broker). A worker killed with -9 "
        "processes again at most about this many finished messages.",
        reference=False,
    )
    consumer_commit_interval_sec: float = setting(
        "EVENT_BUS_KAFKA_CONSUMER_COMMIT_INTERVAL_SEC", 1.0, number(minimum=0.0, inclusive=False),
        "Longest time, in seconds, a done message's offset waits to be committed.",
        reference=False,
    )
    consumer_deduplication: DeduplicationScope = setting(
        "EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION", False, consumer_deduplication,
        "Skip events a consumer group has already processed (the inbox; see the deduplication how-to). "
        "``False``: no group deduplicates. ``True``: every group, every event type. A dict of consumer "
        "group id to ``True``, ``False`` or a list of event types, for example ``{'credentials': True, "
        "'notes': ['org.openedx.learning.course.enrollment.changed.v1']}``: only those groups (and "
        "types). A deduplicated event's receivers run in one transaction on "
        "``EVENT_BUS_KAFKA_TRANSACTION_DATABASE`` with the insert of ``(group, event id)`` into the "
        "inbox table, so their database writes happen once per event; an event id already there is "
        "skipped. Needs the app's migration.",
        reference=False,
    )
    inbox_retention_sec: float = setting(
        "EVENT_BUS_KAFKA_INBOX_RETENTION_SEC", 7 * 24 * 3600.0, number(minimum=0.0, inclusive=False),
        "How long, in seconds, the inbox remembers a processed event. A copy delivered later than this "
        "after the first was processed is processed again, so keep it longer than the longest "
        "redelivery window (by default 7 days, the default retention of a Kafka topic). Older rows "
        "are deleted by the workers (``EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC``) and by "
        "``./manage.py purge_event_bus_inbox``.",
        reference=False,
    )
    inbox_purge_interval_sec: float | None = setting(
        "EVENT_BUS_KAFKA_INBOX_PURGE_INTERVAL_SEC", 60.0, optional_seconds("never"),
        "How often, in seconds, a deduplicating ``consume_events`` worker deletes one batch of inbox "
        "rows older than the retention, between two batches of messages (and again at once while "
        "it finds a full batch). ``None``: workers never purge; run ``purge_event_bus_inbox`` instead.",
        reference=False,
    )
    inbox_purge_batch_size: int = setting(
        "EVENT_BUS_KAFKA_INBOX_PURGE_BATCH_SIZE", 1000, positive_int,
        "Most inbox rows one purge deletes in one database transaction.",
        reference=False,
    )

    def delivery_mode_for(self, event_type: str, topic: str) -> str:
        """The delivery mode of one event type on one topic (base name, without prefix)."""
        overrides = self.delivery_mode_overrides
        return overrides.get(event_type) or overrides.get(topic) or self.delivery_mode

    def __repr__(self) -> str:
        shown = []
        for spec in SETTING_SPECS:
            value = getattr(self, spec.attribute)
            shown.append(f"{spec.attribute}={_redacted_value(spec, value)}")
        return f"EventBusSettings({', '.join(shown)})"


#: Every setting, in declaration order (the order of the settings reference page).
SETTING_SPECS: tuple[SettingSpec, ...] = tuple(
    SettingSpec(attribute=declared.name, **declared.metadata[_SPEC]) for declared in fields(EventBusSettings)
)


def _redacted_value(spec: SettingSpec, value: Any) -> str:
    return spec.shown(value) if spec.secret or isinstance(value, dict) else repr(value)


def _raw_value(source: Any, spec: SettingSpec) -> tuple[str, Any]:
    """The name ``spec`` is set under (its own or an alias) and the value there; its default when unset."""
    given = {name: getattr(source, name) for name in (spec.name, *spec.aliases) if hasattr(source, name)}
    if len(given) > 1:
        raise InvalidSetting(f"is set together with {', '.join(sorted(set(given) - {spec.name}))}, an older name "
                             f"of the same setting; keep only {spec.name}")
    return next(iter(given.items()), (spec.name, spec.default))


# Per-client option dicts, each checked again on top of EVENT_BUS_KAFKA_CLIENT_CONFIG, as the client sees them.
_LAYERED_OPTIONS = (("producer", "producer_config"), ("consumer", "consumer_config"), ("admin", "admin_config"))


def _read(source: Any) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    specs = {spec.attribute: spec for spec in SETTING_SPECS}
    for spec in SETTING_SPECS:
        name, raw = spec.name, _UNSET
        try:
            name, raw = _raw_value(source, spec)
            values[spec.attribute] = spec.parse(raw)
        except InvalidSetting as error:
            shown = "" if raw is _UNSET else f"={spec.shown(raw)}"
            problems.append(f"{name}{shown} {error}.")
    shared = values.get("client_config")
    shared_shown = f"EVENT_BUS_KAFKA_CLIENT_CONFIG={specs['client_config'].shown(shared or {})}"
    refused_alone: dict[str, str] = {}  # kind -> librdkafka's reason, for clients with no own dict
    for kind, attribute in _LAYERED_OPTIONS:
        own = values.get(attribute)
        if not shared or own is None:  # nothing shared, or the client's own dict is already reported
            continue
        together = check_librdkafka_options(own, kind, base=shared)
        if together and own:
            problems.append(f"{shared_shown} with {specs[attribute].name}={specs[attribute].shown(own)} "
                            f"{'; '.join(together)}.")
        elif together:
            refused_alone[kind] = together[0].split(": ", 1)[-1]
    if refused_alone:  # one line for the shared dict, however many clients refuse it
        names = list(refused_alone)
        kinds = f"{', '.join(names[:-1])} and {names[-1]} clients" if len(names) > 1 else f"a {names[0]} client"
        problems.append(f"{shared_shown} is not valid for {kinds}: {next(iter(refused_alone.values()))}.")
    return values, problems


def settings_problems(source: Any = None) -> list[str]:
    """Every problem with the current settings, one line each (empty when all are valid)."""
    return _read(django_settings if source is None else source)[1]


@functools.lru_cache(maxsize=1)
def get_settings() -> EventBusSettings:
    """The validated settings, read from Django settings on first use.

    Raises:
        ConfigurationError: naming every invalid setting.

    """
    values, problems = _read(django_settings)
    if problems:
        raise ConfigurationError(problems)
    return EventBusSettings(**values)


_caches: list[Callable[[], None]] = []


def on_settings_changed(clear: Callable[[], None]) -> Callable[[], None]:
    """Register ``clear`` to run whenever a Django setting changes (tests), after the settings cache.

    Every cache built from settings (producer, schema registry client, encoders, decoders)
    registers here, so one ``setting_changed`` receiver clears them all. Usable as a decorator.
    """
    _caches.append(clear)
    return clear


@receiver(setting_changed)
def _forget_settings(**_kwargs: Any) -> None:
    """Tests change settings with override_settings: read them again next time, and clear what was built."""
    get_settings.cache_clear()
    for clear in _caches:
        clear()
