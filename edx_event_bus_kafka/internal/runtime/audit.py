"""Audit log lines: one INFO line per produced and per consumed event (``EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED``).

They carry topic, partition, offset, message id and key, never event data (it may hold PII); the
message texts are the reference's, so existing log searches keep working. Records are built
directly with a fixed caller location: ``logger.info`` would walk the stack for it on every event,
a measurable share of the per-event cost at high rates. Handlers, filters and formatters configured
by the host apply as for any other record.
"""
from __future__ import annotations

import logging
from typing import Any

#: The reference's logger names: operators' LOGGING settings and log searches select audit lines by them.
PRODUCER_LOGGER = "edx_event_bus_kafka.internal.producer"
CONSUMER_LOGGER = "edx_event_bus_kafka.internal.consumer"

PRODUCED = "Message delivered to Kafka event bus: topic=%s, partition=%s, offset=%s, message_id=%s, key=%s"
CONSUMED = (
    "Message received from Kafka: topic=%s, partition=%s, offset=%s, message_id=%s, key=%s, event_timestamp_ms=%s"
)


def audit(logger: logging.Logger, message: str, args: tuple[Any, ...]) -> None:
    """Emit one INFO audit record on ``logger`` (if INFO is enabled for it)."""
    if logger.isEnabledFor(logging.INFO):
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, args, None, func="audit")
        logger.handle(record)
