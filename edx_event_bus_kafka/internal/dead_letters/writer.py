"""The dead-letter topic: where a consumer group parks messages it could not process, with why.

A dead letter is the original message (key, value and headers untouched) plus provenance headers,
all defined here. It is written with an idempotent producer and the consumer commits the original
offset only after the broker acknowledged the dead letter. The topic name comes from
``EVENT_BUS_KAFKA_DEAD_LETTER_TOPIC`` (default ``{topic}-{group}-dead-letter``, with the prefixed
topic), so each group has its own.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from edx_event_bus_kafka.internal.errors import DeadLetterError
from edx_event_bus_kafka.internal.kafka.clients import Outgoing, ProducerHandle, produce_and_wait
from edx_event_bus_kafka.internal.kafka.protocols import HeaderList, Message, header_list
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


def provenance_headers(message: Message, group_id: str, error: BaseException, attempts: int) -> list[tuple[str, bytes]]:
    """Why and from where a message was dead-lettered, as message headers.

    For a receiver failure the error is the receiver's own exception (class, message, traceback),
    not our ``ReceiverError`` wrapper, so ``redrive_dead_letters --list`` shows what went wrong.
    """
    real, text = real_error(error)
    _, timestamp_ms = message.timestamp()
    values = {
        ORIGINAL_TOPIC: message.topic() or "",
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
    """Writes dead letters and waits for the broker's acknowledgement (rebuilt after a fatal client error)."""

    def __init__(self, settings: EventBusSettings, *, timeout: float = 30.0):
        self.timeout = timeout
        config = producer_client_config(settings)
        config.update({"enable.idempotence": True, "acks": "all", "linger.ms": 0})
        # Other client errors are left to librdkafka's retries: the write's timeout reports a lasting outage.
        self._producer = ProducerHandle(config, name="dead-letter producer")

    def write(self, topic: str, message: Message, extra_headers: list[tuple[str, bytes]]) -> None:
        """Produce the dead letter and block until it is acknowledged.

        Raises:
            DeadLetterError: the broker did not acknowledge it within the timeout, or refused it.

        """
        headers: HeaderList = [*header_list(message.headers()), *extra_headers]
        letter = Outgoing(topic, message.key(), message.value(), headers)
        (outcome,) = produce_and_wait(self._producer.client, [letter], self.timeout,
                                      on_fatal=self._producer.fatal_raised)
        if not outcome.delivered:
            raise DeadLetterError(f"dead letter to {topic} failed: {outcome.reason}")

    def close(self) -> None:
        """Deliver anything pending (normally nothing: writes are synchronous)."""
        self._producer.client.flush(5)
