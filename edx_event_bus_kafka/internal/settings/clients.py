"""librdkafka client configurations and topic names, built from the typed settings in one place.

Our defaults come first, then the user's pass-through dicts are layered over them: the one for every
client (``EVENT_BUS_KAFKA_CLIENT_CONFIG``), then the one for the kind of client
(``EVENT_BUS_KAFKA_PRODUCER_CONFIG`` ...), so SASL/SCRAM, mTLS, OAUTHBEARER, compression and the like
need no code change. The
dicts returned here contain credentials: log them only through ``secrets.redact_options``.
"""
from __future__ import annotations

import logging
from typing import Any

from openedx_events.data import get_service_name

from edx_event_bus_kafka.internal.runtime.log_repeats import RepeatFilter
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, get_settings

# librdkafka's own log lines go to Python logging under this name instead of raw stderr, with
# repeats (a failed reconnect, several times a second) collapsed.
#: ``auto.offset.reset`` values (librdkafka's spellings) that start a group without commits at the beginning.
OFFSET_RESET_FROM_BEGINNING = frozenset({"smallest", "earliest", "beginning"})

LIBRDKAFKA_LOGGER = logging.getLogger("edx_event_bus_kafka.librdkafka")
LIBRDKAFKA_LOGGER.addFilter(RepeatFilter())

# Producer defaults: no loss and no duplicates from retries (idempotence implies acks=all), small
# batches for low latency, cheap compression.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
}

# Consumer defaults: offsets are stored and committed by our loop only once a message is done.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
}


def get_full_topic(base_topic: str, settings: EventBusSettings | None = None) -> str:
    """The topic name on the broker: ``{EVENT_BUS_TOPIC_PREFIX}-{base_topic}`` when a prefix is set."""
    prefix = (settings or get_settings()).topic_prefix
    return f"{prefix}-{base_topic}" if prefix else base_topic


def common_client_config(settings: EventBusSettings | None = None) -> dict[str, Any]:
    """Options every client shares: brokers, credentials, client id and logging."""
    settings = settings or get_settings()
    config: dict[str, Any] = {"logger": LIBRDKAFKA_LOGGER}
    if settings.bootstrap_servers:
        config["bootstrap.servers"] = settings.bootstrap_servers
    if settings.api_key and settings.api_secret:
        config.update({
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": settings.api_key,
            "sasl.password": settings.api_secret.reveal(),
        })
    service_name = get_service_name()
    if service_name:
        config["client.id"] = service_name
    config.update(settings.client_config)
    return config


def producer_client_config(settings: EventBusSettings | None = None) -> dict[str, Any]:
    """Full librdkafka config for the producer."""
    settings = settings or get_settings()
    return {**common_client_config(settings), **PRODUCER_DEFAULTS, **settings.producer_config}


def consumer_client_config(group_id: str, settings: EventBusSettings | None = None) -> dict[str, Any]:
    """Full librdkafka config for a consumer in ``group_id``; our offset options always win."""
    settings = settings or get_settings()
    return {
        **common_client_config(settings),
        **CONSUMER_DEFAULTS,
        **settings.consumer_config,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }


def admin_client_config(settings: EventBusSettings | None = None) -> dict[str, Any]:
    """Full librdkafka config for an admin client."""
    settings = settings or get_settings()
    return {**common_client_config(settings), **settings.admin_config}


def schema_registry_client_config(settings: EventBusSettings | None = None) -> dict[str, Any] | None:
    """Config for confluent-kafka's ``SchemaRegistryClient``, or ``None`` without a registry URL."""
    settings = settings or get_settings()
    if not settings.schema_registry_url:
        return None
    config: dict[str, Any] = {"url": settings.schema_registry_url}
    if settings.schema_registry_api_key or settings.schema_registry_api_secret:
        secret = settings.schema_registry_api_secret.reveal()
        config["basic.auth.user.info"] = f"{settings.schema_registry_api_key}:{secret}"
    return config
