"""The dead-letter topic: where a consumer group parks messages it could not process, with why.

A dead letter is the original message (key, value and headers untouched) plus provenance headers,
all defined here. It is written with an idempotent producer and the consumer commits the original
offset only after the broker acknowledged the dead letter. The topic name comes from
``EVENT_BUS_KAFKA_DEAD_LETTER_TOPIC`` (default ``{topic}-{group}-dead-letter``, with the prefixed
topic), so each group has its own.
"""
from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from edx_event_bus_kafka.internal.errors import DeadLetterError
from edx_event_bus_kafka.internal.settings.clients import producer_client_config
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings

PREFIX = "dead_letter_"
ORIGINAL_TOPIC = PREFIX + "original_topic"
ORIGINAL_PARTITION = PREFIX + "original_partition"
ORIGINAL_OFFSET = PREFIX + "original_offset"
ORIGINAL_TIMESTAMP = PREFIX + "original_timestamp_ms"
GROUP = PREFIX + "group"
ERROR_CLASS = PREFIX + "error_class"
ERROR_MESSAGE = PREFIX + "error_message"
ERROR_TRACEBACK = PREFIX + "error_traceback"
ATTEMPTS = PREFIX + "attempts"
TIME = PREFIX + "time"
# Set by redrive on re-published messages: only this group processes them; other groups skip them.
REDRIVE_GROUP = PREFIX + "redrive_group"

MAX_ERROR_MESSAGE = 2000


def dead_letter_topic(full_topic: str, group_id: str, settings: EventBusSettings) -> str:
    """The dead-letter topic of a group reading ``full_topic`` (group id made topic-safe)."""
    safe_group = re.sub(r"[^A-Za-z0-9._-]", "_", group_id)
    return settings.dead_letter_topic.format(topic=full_topic, group=safe_group)


def real_error(error: BaseException) -> tuple[BaseException, str]:
    """The exception that made processing fail (a receiver's, not the wrapper) and a one-line account."""
    from edx_event_bus_kafka.internal.errors import ReceiverError

    if isinstance(error, ReceiverError) and error.causes:
        return error.causes[0], error.described_causes()
    return error, str(error)


def failure_traceback(error: BaseException) -> str:
    """``error``'s traceback as text (empty when it has none)."""
    import traceback

    if error.__traceback__ is None:
        return ""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def provenance_headers(message: Any, group_id: str, error: BaseException, attempts: int) -> list[tuple[str, bytes]]:
    """Why and from where a message was dead-lettered, as message headers.

    For a receiver failure the error is the receiver's own exception (class, message, traceback),
    not our ``ReceiverError`` wrapper, so ``redrive_dead_letters --list`` shows what went wrong.
    """
    real, text = real_error(error)
    _, timestamp_ms = message.timestamp()
    values = {
        ORIGINAL_TOPIC: message.topic(),
        ORIGINAL_PARTITION: str(message.partition()),
        ORIGINAL_OFFSET: str(message.offset()),
        ORIGINAL_TIMESTAMP: str(timestamp_ms),
        GROUP: group_id,
        ERROR_CLASS: f"{type(real).__module__}.{type(real).__qualname__}",
        ERROR_MESSAGE: text[:MAX_ERROR_MESSAGE],
        ERROR_TRACEBACK: failure_traceback(real)[-MAX_ERROR_MESSAGE:],
        ATTEMPTS: str(attempts),
        TIME: datetime.now(UTC).isoformat(),
    }
    return [(name, value.encode("utf-8")) for name, value in values.items()]


def without_provenance(headers: Any) -> list[tuple[str, bytes]]:
    """The original headers of a dead letter (provenance and redrive headers removed)."""
    return [(key, value) for key, value in headers or () if not key.startswith(PREFIX)]


def provenance(headers: Any) -> dict[str, str]:
    """The provenance of a dead letter as a dict (header name without prefix -> text)."""
    return {
        key[len(PREFIX):]: value.decode("utf-8", "replace")
        for key, value in headers or ()
        if key.startswith(PREFIX) and isinstance(value, bytes)
    }


class DeadLetterWriter:
    """Writes dead letters and waits for the broker's acknowledgement."""

    def __init__(self, settings: EventBusSettings, *, timeout: float = 30.0):
        from confluent_kafka import Producer

        self.timeout = timeout
        self._config = producer_client_config(settings)
        self._config.update({"enable.idempotence": True, "acks": "all", "linger.ms": 0,
                             "error_cb": self._on_client_error})
        self._fatal: Any = None
        self._producer = Producer(self._config)

    def _on_client_error(self, error: Any) -> None:
        if error.fatal():
            self._fatal = error  # rebuilt before the next write: a dead client would fail forever

    def write(self, topic: str, message: Any, extra_headers: list[tuple[str, bytes]]) -> None:
        """Produce the dead letter and block until it is acknowledged.

        Raises:
            DeadLetterError: the broker did not acknowledge it within the timeout, or refused it.

        """
        if self._fatal is not None:
            from confluent_kafka import Producer

            self._fatal = None
            self._producer = Producer(self._config)
        outcome: dict[str, Any] = {}

        def on_delivery(error: Any, _message: Any) -> None:
            outcome["error"] = error
            outcome["done"] = True

        headers = list(message.headers() or []) + extra_headers
        try:
            self._producer.produce(topic, key=message.key(), value=message.value(), headers=headers,
                                   on_delivery=on_delivery)
        except Exception as error:
            raise DeadLetterError(f"could not queue dead letter for {topic}: {error}") from error
        deadline = time.monotonic() + self.timeout
        while "done" not in outcome and time.monotonic() < deadline:
            self._producer.poll(0.1)
        if "done" not in outcome:
            raise DeadLetterError(f"dead letter to {topic} not acknowledged within {self.timeout} s")
        if outcome["error"] is not None:
            raise DeadLetterError(f"dead letter to {topic} failed: {outcome['error']}")

    def close(self) -> None:
        """Deliver anything pending (normally nothing: writes are synchronous)."""
        self._producer.flush(5)
