"""The exception tree of the event bus.

Every error we raise derives from :class:`EventBusKafkaError`, so callers can catch ours without
catching everything. Each error carries the context it knows (setting, topic, partition, offset,
event id) as attributes, and its message never contains a secret.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


class EventBusKafkaError(Exception):
    """Root of every error raised by edx_event_bus_kafka."""


class ConfigurationError(EventBusKafkaError, ImproperlyConfigured):
    """One or more settings are invalid.

    ``problems`` lists one human-readable line per bad setting; each names the setting, the (redacted
    when secret) value and the fix.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            "Invalid event bus configuration:\n" + "\n".join(f"  - {problem}" for problem in self.problems)
        )


class InvalidSetting(EventBusKafkaError, ValueError):
    """Raised by a setting's parser; the message says what is wrong and how to fix it.

    Settings reading collects these into one :class:`ConfigurationError`.
    """


class EmbeddedBrokerError(EventBusKafkaError):
    """A test or development broker (embedded Tansu, or Apache Kafka) could not be found or started."""


class BrokerRefusedError(EventBusKafkaError):
    """The broker refused our credentials or TLS setup; retrying will not help until the settings change."""


class EventProductionException(EventBusKafkaError):
    """An event could not be produced (reference name, kept for compatibility)."""


class EventConsumptionException(EventBusKafkaError):
    """An event could not be consumed (reference name, kept for compatibility)."""


class MessageContextError(EventBusKafkaError):
    """An error about one Kafka message, carrying where the message came from."""

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
    ):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.event_id = event_id
        self.event_type = event_type
        super().__init__(message)

    def context(self) -> dict[str, Any]:
        """Where the message came from, for logs and dead-letter headers."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "event_id": self.event_id,
            "event_type": self.event_type,
        }

    def __str__(self) -> str:
        known = ", ".join(f"{key}={value}" for key, value in self.context().items() if value is not None)
        base = super().__str__()
        return f"{base} ({known})" if known else base


class UnusableMessageError(MessageContextError):
    """A message was received but can never be processed as it is.

    Bad or missing headers, an unknown event type, an undecodable value: retrying will not help, so
    the message goes to the dead-letter topic at once.
    """


class ReceiverError(MessageContextError):
    """One or more receivers of the re-emitted signal raised an exception."""

    def __init__(self, message: str, causes: list[BaseException], **context: Any):
        self.causes = list(causes)
        super().__init__(message, **context)


class TopicReadError(EventBusKafkaError):
    """A topic could not be read to its end (brokers unreachable, read error, or too slow)."""


class RedriveError(EventBusKafkaError):
    """Dead letters are not fit to be re-published (nothing was sent)."""


class RepublishError(RedriveError):
    """Some copies were not acknowledged by the broker; ``failures`` names each, the rest were delivered."""

    def __init__(self, message: str, failures: list[tuple[Any, str]], delivered: int):
        self.failures = failures
        self.delivered = delivered
        super().__init__(message)


class DeadLetterError(EventBusKafkaError):
    """A dead letter could not be written; the original message must not be skipped."""


class OffsetLookupError(EventBusKafkaError):
    """The broker could not say which offsets a replay starts from."""


class UnknownTopicError(EventBusKafkaError, LookupError):
    """A topic the command was asked about does not exist."""


class TopicAdminError(EventBusKafkaError):
    """The broker could not be asked which topics exist, so nothing was created."""


class PermanentRowError(EventBusKafkaError):
    """An outbox row that can never be serialized (unknown type, bad key path, data not fitting the schema)."""


class OffsetResetError(EventBusKafkaError):
    """A consumer group's offsets could not be planned or moved (nothing or not everything was changed)."""


class GroupActiveError(OffsetResetError):
    """The group has active members, so its offsets must not be moved; ``members`` describes each."""

    def __init__(self, message: str, members: list[Any]):
        self.members = list(members)
        super().__init__(message)
