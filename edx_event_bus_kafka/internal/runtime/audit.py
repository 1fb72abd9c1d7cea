"""Audit log lines: one INFO line per produced and per consumed event (``EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED``).

They carry topic, partition, offset, message id and key, never event data (it may hold PII); the
message texts are the reference's, so existing log searches keep working. The key is shown decoded
(``key=course-v1:edX+DemoX+Demo_Course``) where the reference printed its Avro bytes. Records are built
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


class ReadableKey:
    """A message key as text in a log line: the string fields of its Avro record, decoded only when formatted.

    Keys are in the schema registry's wire format (a zero byte and a 4-byte schema id) or, without
    a registry, Avro's single-object encoding (``C3 01`` and an 8-byte schema fingerprint), then the
    Avro record: for our key schemas, string fields, each a zig-zag length and UTF-8 bytes.
    Anything else is shown as its bytes, as before.
    """

    __slots__ = ("key",)

    def __init__(self, key: bytes | None):
        self.key = key

    def __str__(self) -> str:
        key = self.key
        if not isinstance(key, bytes):
            return repr(key)
        if key[:1] == b"\x00" and len(key) > 5:
            position = 5
        elif key[:2] == b"\xc3\x01" and len(key) > 10:
            position = 10
        else:
            return repr(key)
        fields = []
        try:
            while position < len(key):
                length, position = _zigzag(key, position)
                if length < 0 or position + length > len(key):
                    return repr(key)
                fields.append(key[position:position + length].decode("utf-8"))
                position += length
        except (IndexError, UnicodeDecodeError):
            return repr(key)
        return ",".join(fields) if fields else repr(key)


def _zigzag(data: bytes, position: int) -> tuple[int, int]:
    """An Avro long at ``position``: (value, position after it)."""
    shift = result = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), position
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")
