"""Every Django setting of the event bus, read into one frozen, typed object.

Each setting is declared once below as a :class:`SettingSpec`, whose ``description`` is the
documentation: ``scripts/render_settings_doc.py`` renders ``docs/reference/settings.rst`` from
these blocks. Settings are read lazily (never at import time) by :func:`get_settings`, cached, and
the cache is cleared when a test changes a setting.

Invalid values are reported all at once, each naming the setting, the value (redacted when secret)
and the fix. Secrets are wrapped in :class:`Secret`, whose ``repr`` and ``str`` never show them.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from edx_event_bus_kafka.internal.errors import ConfigurationError, InvalidSetting
from edx_event_bus_kafka.internal.settings.librdkafka_options import check_librdkafka_options
from edx_event_bus_kafka.internal.settings.secrets import Secret, redact_options, redact_url

__all__ = ["SETTING_SPECS", "EventBusSettings", "Secret", "get_settings", "settings_problems"]


Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class SettingSpec:
    """One Django setting: its name, default, parser and documentation."""

    name: str
    attribute: str
    default: Any
    parse: Parser
    description: str
    secret: bool = False
    reference: bool = True  # also a setting of the reference implementation

    def shown(self, value: Any) -> str:
        """The value as it may appear in an error message."""
        if self.secret:
            return "'********'" if value else repr(value)
        if isinstance(value, Mapping):
            return repr(redact_options(value))
        if isinstance(value, str) and "://" in value:
            return repr(redact_url(value))
        return repr(value)


# ---------------------------------------------------------------------------------------------
# Parsers. Each takes the raw value and returns the typed one, or raises InvalidSetting.

def _optional_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidSetting("must be a string or None")
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidSetting("must be a string")
    return value


def _optional_secret(value: Any) -> Secret | None:
    text = _optional_text(value)
    return Secret(text) if text else None


def _secret(value: Any) -> Secret:
    return Secret(_text(value))


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidSetting("must be True or False (a string such as 'false' would count as true)")
    return value


def _number(*, minimum: float, inclusive: bool) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidSetting("must be a number of seconds")
        if value < minimum or (not inclusive and value == minimum):
            bound = f">= {minimum}" if inclusive else f"> {minimum}"
            raise InvalidSetting(f"must be {bound}")
        return float(value)
    return parse


def _optional_count(none_means: str, *, minus_one_means: str | None = None) -> Parser:
    """A whole number >= 1, or None (meaning ``none_means``), or -1 when ``minus_one_means`` is given."""
    alternatives = f", -1 ({minus_one_means})" if minus_one_means else ""

    def parse(value: Any) -> int | None:
        if value is None or (minus_one_means and value == -1 and not isinstance(value, bool)):
            return None if value is None else -1
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidSetting(f"must be a whole number >= 1{alternatives}, or None for {none_means}")
        return value
    return parse


_HOST_PORT = re.compile(
    r"^(?:[A-Za-z_]+://)?"                      # optional listener protocol, e.g. SASL_SSL://
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"   # [IPv6] or hostname / IPv4
    r"(?::(?P<port>\d{1,5}))?$"
)


def _bootstrap_servers(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        entries = list(value)
    elif isinstance(value, str):
        entries = value.split(",")
    else:
        raise InvalidSetting("must be a comma-separated string of host:port pairs, e.g. 'kafka1:9092,kafka2:9092'")
    cleaned = []
    for raw_entry in entries:
        entry = raw_entry.strip() if isinstance(raw_entry, str) else raw_entry
        match = _HOST_PORT.match(entry) if isinstance(entry, str) else None
        port = match.group("port") if match else None
        if not match or (port is not None and not 0 < int(port) < 65536):
            raise InvalidSetting(
                f"entry {entry!r} is not host:port; use a comma-separated list such as 'kafka1:9092,kafka2:9092'"
            )
        cleaned.append(entry)
    return ",".join(cleaned)


def _registry_url(value: Any) -> str | None:
    text = _optional_text(value)
    if text is None:
        return None
    urls = [part.strip() for part in text.split(",")]
    for url in urls:
        if not re.match(r"^(https?|mock)://[^/\s]+", url):
            raise InvalidSetting(
                "must be an http(s):// URL of a Confluent-compatible schema registry, e.g. 'https://registry:8081'"
            )
    return ",".join(urls)


DELIVERY_MODES = ("immediate", "on_commit", "outbox")


def _delivery_mode(value: Any) -> str:
    if value not in DELIVERY_MODES:
        raise InvalidSetting(f"must be one of {', '.join(map(repr, DELIVERY_MODES))}")
    return str(value)


def _delivery_mode_overrides(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSetting("must be a dict of event type or topic to delivery mode")
    for target, mode in value.items():
        if not isinstance(target, str) or mode not in DELIVERY_MODES:
            raise InvalidSetting(
                f"entry {target!r}: {mode!r} is not a delivery mode; use one of {', '.join(map(repr, DELIVERY_MODES))}"
            )
    return dict(value)


def _database_alias(value: Any) -> str:
    from django.db import connections

    if not isinstance(value, str) or value not in connections.settings:
        raise InvalidSetting(f"must name a database in DATABASES ({', '.join(connections.settings)})")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSetting("must be a whole number >= 1")
    return value


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        if value not in choices:
            raise InvalidSetting(f"must be one of {', '.join(map(repr, choices))}")
        return str(value)
    return parse


def _topic_template(value: Any) -> str:
    if not isinstance(value, str) or "{topic}" not in value:
        raise InvalidSetting("must be a string containing '{topic}' (and usually '{group}')")
    try:
        value.format(topic="t", group="g")
    except (KeyError, IndexError, ValueError) as error:
        raise InvalidSetting(f"may use only {{topic}} and {{group}} ({error})") from None
    return value


def _librdkafka_options(*kinds: str) -> Parser:
    """A dict of librdkafka options for a client of each of ``kinds``.

    With one kind librdkafka checks the dict whole. The shared dict (several kinds) is only checked
    for owned options and value types here, and whole under each client's own dict in ``_read``.
    """
    def parse(value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise InvalidSetting("must be a dict of librdkafka option names to values")
        problems: list[str] = []
        for kind in kinds:
            problems += [p for p in check_librdkafka_options(dict(value), kind, whole=len(kinds) == 1)
                         if p not in problems]
        if problems:
            raise InvalidSetting("; ".join(problems))
        return dict(value)
    return parse


# ---------------------------------------------------------------------------------------------
# The settings. Keep the reference's names, defaults and meanings; add new ones at the end.

SETTING_SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers", None, _bootstrap_servers,
        "Comma-separated ``host:port`` list of Kafka brokers to bootstrap from. Required for "
        "producing and consuming; when unset, ``create_producer()`` returns ``None`` and events are "
        "not sent to the bus.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "schema_registry_url", None, _registry_url,
        "URL of a Confluent-compatible Avro schema registry. When set, messages use the Confluent "
        "wire format (magic byte, schema id) and schemas are registered under "
        "``{full_topic}-{record name}``; this is what services running the reference "
        "implementation need. When unset, messages use Avro single-object encoding, which only "
        "this implementation reads.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY", "schema_registry_api_key", "", _text,
        "User name (API key) for basic authentication to the schema registry. Optional.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET", "schema_registry_api_secret", "", _secret,
        "Password (API secret) for basic authentication to the schema registry. Optional; never "
        "logged.",
        secret=True,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_API_KEY", "api_key", None, _optional_text,
        "SASL/PLAIN user name for the Kafka cluster. When both this and "
        "``EVENT_BUS_KAFKA_API_SECRET`` are set, clients use ``SASL_SSL`` with ``PLAIN``. For "
        "SCRAM, OAUTHBEARER or mTLS, use the ``*_CONFIG`` pass-through settings instead.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_API_SECRET", "api_secret", None, _optional_secret,
        "SASL/PLAIN password for the Kafka cluster, used with ``EVENT_BUS_KAFKA_API_KEY``. Never "
        "logged.",
        secret=True,
    ),
    SettingSpec(
        "EVENT_BUS_TOPIC_PREFIX", "topic_prefix", None, _optional_text,
        "Prefix added to every topic name, joined with a hyphen: with ``stage``, topic "
        "``user-login`` becomes ``stage-user-login``. Lets several environments share a cluster.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_POLL_INTERVAL_SEC", "poll_interval_sec", 1.0,
        _number(minimum=0.0, inclusive=False),
        "How often, in seconds, a background thread polls the producer so delivery reports are "
        "handled even when no further events are sent.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT", "consumer_poll_timeout", 1.0,
        _number(minimum=0.0, inclusive=True),
        "How long, in seconds, one consumer poll waits for messages before the loop checks for "
        "shutdown and health.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_POLL_FAILURE_SLEEP", "consumer_poll_failure_sleep", 1.0,
        _number(minimum=0.0, inclusive=True),
        "How long, in seconds, the consumer waits after a failed poll before polling again, so a "
        "broker outage does not become a busy error loop.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT", "consumer_consecutive_errors_limit", None,
        _optional_count("no limit"),
        "After this many errors in a row (failed polls or failed messages), the consumer exits "
        "with a non-zero status so its supervisor restarts it with fresh state. ``None`` means no "
        "limit.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMERS_ENABLED", "consumers_enabled", True, _flag,
        "Kill switch: when ``False``, ``consume_events`` exits at start without consuming.",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED", "audit_logging_enabled", True, _flag,
        "When ``True``, log one INFO line per produced and per consumed event with topic, "
        "partition, offset, message id and key (never the event data).",
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CLIENT_CONFIG", "client_config", {}, _librdkafka_options("producer", "consumer", "admin"),
        "Extra librdkafka options for every Kafka client the event bus makes (producers, consumers, "
        "dead-letter writer, outbox relay, admin and status commands), layered over ours: the place for "
        "connection security shared by all of them, for example SASL/SCRAM "
        "``{'security.protocol': 'SASL_SSL', 'sasl.mechanism': 'SCRAM-SHA-512', 'sasl.username': ..., "
        "'sasl.password': ...}`` or mutual TLS ``{'security.protocol': 'SSL', 'ssl.ca.location': ..., "
        "'ssl.certificate.location': ..., 'ssl.key.location': ...}``. The per-client dicts below are "
        "layered over it.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_PRODUCER_CONFIG", "producer_config", {}, _librdkafka_options("producer"),
        "Extra librdkafka options for the producer, layered over ours (for example "
        "``{'compression.type': 'zstd', 'sasl.mechanism': 'SCRAM-SHA-512', ...}``). Unknown "
        "options are rejected at start-up.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_CONFIG", "consumer_config", {}, _librdkafka_options("consumer"),
        "Extra librdkafka options for consumers, layered over ours. ``group.id`` and the offset "
        "commit options are owned by the consumer and cannot be set here.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_ADMIN_CONFIG", "admin_config", {}, _librdkafka_options("admin"),
        "Extra librdkafka options for admin clients (topic management, status), layered over ours.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_DELIVERY_MODE", "delivery_mode", "on_commit", _delivery_mode,
        "When a produced event is handed to Kafka. ``on_commit``: after the database transaction "
        "that is open when the event is sent commits (at once when none is open); an event of a "
        "rolled-back transaction is never published. ``immediate``: at once, as the reference "
        "does, even if the transaction later rolls back. ``outbox``: written to the outbox table "
        "in the caller's transaction and published by the relay, surviving broker outages and "
        "process crashes (run ``./manage.py relay_outbox``; needs the app's migration).",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_DELIVERY_MODE_OVERRIDES", "delivery_mode_overrides", {}, _delivery_mode_overrides,
        "Per event type or per topic (without prefix) delivery mode, overriding "
        "``EVENT_BUS_KAFKA_DELIVERY_MODE``; an event type entry wins over a topic entry. Example: "
        "``{'org.openedx.learning.auth.session.login.completed.v1': 'immediate'}``.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_TRANSACTION_DATABASE", "transaction_database", "default", _database_alias,
        "Alias of the database whose transactions the ``on_commit`` delivery mode follows.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_PRODUCER_FLUSH_TIMEOUT_SEC", "producer_flush_timeout_sec", 10.0,
        _number(minimum=0.0, inclusive=True),
        "At process exit or SIGTERM, how long, in seconds, to wait for buffered events to be "
        "acknowledged. Events still unacknowledged afterwards are logged one by one with everything "
        "needed to re-send them.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_PRODUCER_FLUSH_ON_SIGTERM", "producer_flush_on_sigterm", True, _flag,
        "Install a SIGTERM handler (main thread only) that flushes buffered events and then runs the "
        "handler that was installed before it, or the default action. Turn off if your process "
        "manager must own SIGTERM entirely; events are still flushed at normal exit.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_OUTBOX_BATCH_SIZE", "outbox_batch_size", 200, _positive_int,
        "Most outbox rows the relay publishes, waits for and marks in one database transaction.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC", "outbox_poll_interval_sec", 1.0,
        _number(minimum=0.0, inclusive=False),
        "How often, in seconds, an idle ``relay_outbox`` looks for new rows; also the first "
        "back-off after a broker or registry failure (it doubles up to 60 s).",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT", "outbox_publish_on_commit", True, _flag,
        "When ``True``, the producing process publishes its outbox rows itself right after the "
        "transaction commits (in a background thread), so events go out without waiting for the "
        "relay; the relay remains the safety net for rows this could not publish.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_OUTBOX_RETENTION_SEC", "outbox_retention_sec", 7 * 24 * 3600.0,
        _number(minimum=0.0, inclusive=True),
        "Published outbox rows older than this many seconds are deleted by the relay. ``0`` deletes "
        "them as soon as they are published.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_OUTBOX_DELIVERY_TIMEOUT_SEC", "outbox_delivery_timeout_sec", 30.0,
        _number(minimum=0.0, inclusive=False),
        "How long, in seconds, the relay waits for the broker to acknowledge a batch before "
        "leaving the unacknowledged rows pending for a later attempt.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_FAILURE_POLICY", "consumer_failure_policy", "dead_letter",
        _choice("dead_letter", "log_and_skip"),
        "What a consumer does with a message it cannot process. ``dead_letter``: write it, with why, "
        "to the group's dead-letter topic and commit only once that is acknowledged. "
        "``log_and_skip``: the reference's behaviour, log the error and move on (the event is lost "
        "for this group).",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_ATTEMPTS", "consumer_retry_attempts", 3, _positive_int,
        "How many times in all a message whose receivers fail is tried before the failure policy "
        "applies. Unusable messages (bad headers, unknown type, undecodable) are not retried.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_SEC", "consumer_retry_backoff_sec", 1.0,
        _number(minimum=0.0, inclusive=True),
        "Delay, in seconds, before the first retry of a failed message; it doubles for each further "
        "retry up to ``EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_MAX_SEC``. Keep the total well under "
        "the consumer's ``max.poll.interval.ms`` (300 s by default).",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_MAX_SEC", "consumer_retry_backoff_max_sec", 30.0,
        _number(minimum=0.0, inclusive=True),
        "Longest delay, in seconds, between two attempts at one message.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_DEAD_LETTER_TOPIC", "dead_letter_topic", "{topic}-{group}-dead-letter", _topic_template,
        "Name of a consumer group's dead-letter topic. ``{topic}`` is the consumed topic with its "
        "prefix, ``{group}`` the group id (characters Kafka does not allow become ``_``).",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_SHUTDOWN_TIMEOUT_SEC", "consumer_shutdown_timeout_sec", 30.0,
        _number(minimum=0.0, inclusive=False),
        "After SIGTERM or SIGINT, how long, in seconds, a worker may take to finish its current "
        "message, commit and leave the group before it exits at once (status 4).",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_TOPIC_PARTITIONS", "topic_partitions", 3, _positive_int,
        "Partitions of topics created by ``create_event_bus_topics`` (event topics and dead-letter "
        "topics). More partitions allow more workers per group; per-key order holds either way.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_TOPIC_REPLICATION_FACTOR", "topic_replication_factor", None,
        _optional_count("the broker's default"),
        "Replication factor of topics created by ``create_event_bus_topics``; ``None`` uses the "
        "broker's ``default.replication.factor``.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_TOPIC_RETENTION_MS", "topic_retention_ms", None,
        _optional_count("the broker's default", minus_one_means="keep forever"),
        "``retention.ms`` of event topics created by ``create_event_bus_topics``; ``None`` uses the "
        "broker's default, ``-1`` keeps messages forever.",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_DEAD_LETTER_RETENTION_MS", "dead_letter_retention_ms", -1,
        _optional_count("the broker's default", minus_one_means="keep forever"),
        "``retention.ms`` of dead-letter topics created by ``create_event_bus_topics``; by default "
        "dead letters are kept until an operator deals with them (``-1``).",
        reference=False,
    ),
    SettingSpec(
        "EVENT_BUS_KAFKA_CONSUMER_BATCH_SIZE", "consumer_batch_size", 500, _positive_int,
        "Most messages one consumer poll returns. Offsets are committed once per batch (and on "
        "shutdown and rebalance), so a larger batch means fewer commits.",
        reference=False,
    ),
)


@dataclass(frozen=True)
class EventBusSettings:
    """The validated settings. Build it with :func:`get_settings`, never directly."""

    bootstrap_servers: str | None
    schema_registry_url: str | None
    schema_registry_api_key: str
    schema_registry_api_secret: Secret
    api_key: str | None
    api_secret: Secret | None
    topic_prefix: str | None
    poll_interval_sec: float
    consumer_poll_timeout: float
    consumer_poll_failure_sleep: float
    consumer_consecutive_errors_limit: int | None
    consumers_enabled: bool
    audit_logging_enabled: bool
    client_config: dict[str, Any]
    producer_config: dict[str, Any]
    consumer_config: dict[str, Any]
    admin_config: dict[str, Any]
    delivery_mode: str
    delivery_mode_overrides: dict[str, str]
    transaction_database: str
    producer_flush_timeout_sec: float
    producer_flush_on_sigterm: bool
    outbox_batch_size: int
    outbox_poll_interval_sec: float
    outbox_publish_on_commit: bool
    outbox_retention_sec: float
    outbox_delivery_timeout_sec: float
    consumer_failure_policy: str
    consumer_retry_attempts: int
    consumer_retry_backoff_sec: float
    consumer_retry_backoff_max_sec: float
    dead_letter_topic: str
    consumer_shutdown_timeout_sec: float
    consumer_batch_size: int
    topic_partitions: int
    topic_replication_factor: int | None
    topic_retention_ms: int | None
    dead_letter_retention_ms: int | None

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


def _redacted_value(spec: SettingSpec, value: Any) -> str:
    return spec.shown(value) if spec.secret or isinstance(value, dict) else repr(value)


# Per-client option dicts, each checked again on top of EVENT_BUS_KAFKA_CLIENT_CONFIG, as the client sees them.
_LAYERED_OPTIONS = (("producer", "producer_config"), ("consumer", "consumer_config"), ("admin", "admin_config"))


def _read(source: Any) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    specs = {spec.attribute: spec for spec in SETTING_SPECS}
    for spec in SETTING_SPECS:
        raw = getattr(source, spec.name, spec.default)
        try:
            values[spec.attribute] = spec.parse(raw)
        except InvalidSetting as error:
            problems.append(f"{spec.name}={spec.shown(raw)} {error}.")
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


def _assert_specs_match_fields() -> None:
    declared = {spec.attribute for spec in SETTING_SPECS}
    typed = {field.name for field in fields(EventBusSettings)}
    assert declared == typed, f"settings specs and EventBusSettings differ: {declared ^ typed}"


_assert_specs_match_fields()


@receiver(setting_changed)
def _forget_settings(**_kwargs: Any) -> None:
    """Tests change settings with override_settings; read them again next time."""
    get_settings.cache_clear()
