"""What happens to a produced event after ``send``: delivery reports, audit lines, failure records.

Nothing here runs on the happy path of ``send`` except creating a small :class:`PendingEvent`.
The JSON needed to re-send an event is built only when the event has failed.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from openedx_events.data import EventsMetadata
from openedx_events.tooling import OpenEdxPublicSignal

from edx_event_bus_kafka.internal.errors import EventProductionException
from edx_event_bus_kafka.internal.kafka.recovery import StuckClient
from edx_event_bus_kafka.internal.runtime.audit import PRODUCED, PRODUCER_LOGGER, audit
from edx_event_bus_kafka.internal.runtime.monitoring import record_error, set_attribute
from edx_event_bus_kafka.internal.wire.records import event_data_to_record

logger = logging.getLogger(PRODUCER_LOGGER)


#: Failed delivery reports in a row (none delivered) before the producer's broker is probed.
FAILED_DELIVERIES_BEFORE_PROBE = 10


@dataclass
class ProducerStats:
    """Counts of what the producer did, for tests, status commands and monitoring."""

    sent: int = 0
    outboxed: int = 0
    delivered: int = 0
    failed: int = 0
    failures_by_reason: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, outcome: str, reason: str | None = None) -> None:
        """Add one event to ``outcome`` (sent / delivered / failed)."""
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            if reason:
                self.failures_by_reason[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the counters."""
        with self._lock:
            return {
                "sent": self.sent, "outboxed": self.outboxed, "delivered": self.delivered, "failed": self.failed,
                "failures_by_reason": dict(self.failures_by_reason),
            }


@dataclass(frozen=True)
class OutgoingEvent:
    """The arguments of one ``send``: everything needed to publish, or re-send, an event."""

    signal: OpenEdxPublicSignal
    topic: str
    event_key_field: str
    event_data: dict[str, Any]
    event_metadata: EventsMetadata


class PendingEvent:
    """One event on its way out, and the delivery-report callback for it."""

    __slots__ = ("event", "full_topic", "recorder")

    def __init__(self, recorder: DeliveryRecorder, event: OutgoingEvent, full_topic: str):
        self.recorder = recorder
        self.event = event
        self.full_topic = full_topic

    def __call__(self, error: Any, message: Any) -> None:
        """Delivery report callback from librdkafka (runs in whichever thread polls)."""
        if error is None:
            self.recorder.stuck.passed(attempted=1, delivered=1)
            self.recorder.delivered(self, message)
        else:
            self.recorder.stuck.passed(attempted=1, delivered=0)
            reason = "broker" if not hasattr(error, "name") else str(error.name()).lower()
            self.recorder.failed(self, reason, error)

    def describe(self) -> str:
        """Everything needed to re-send the event, as ``key=value`` fields (data and metadata as JSON)."""
        event = self.event
        try:
            data_json = json.dumps(event_data_to_record(event.event_data), sort_keys=True, default=str)
        except Exception as error:  # noqa: BLE001 -- the data may be what failed; still log what we can
            data_json = f"<not serializable: {error!r}> {event.event_data!r}"
        try:
            metadata_json = event.event_metadata.to_json()
        except Exception:  # noqa: BLE001 -- same: keep whatever can be shown
            metadata_json = repr(event.event_metadata)
        event_type = getattr(event.signal, "event_type", repr(event.signal))
        return (
            f"event_type={event_type} topic={event.topic} full_topic={self.full_topic} "
            f"event_key_field={event.event_key_field} event_id={getattr(event.event_metadata, 'id', None)} "
            f"event_data={data_json} event_metadata={metadata_json}"
        )


class DeliveryRecorder:
    """Counts, audits and reports the outcome of every event of one producer."""

    def __init__(self, audit_logging: bool):
        self.audit_logging = audit_logging
        self.stats = ProducerStats()
        #: Delivery reports in a row that failed: a client the broker keeps rejecting is replaced.
        self.stuck = StuckClient(passes=FAILED_DELIVERIES_BEFORE_PROBE)

    def sent(self) -> None:
        """An event was handed to librdkafka."""
        self.stats.count("sent")

    def count_outbox(self) -> None:
        """An event was written to the outbox (published later by the relay or flusher)."""
        self.stats.count("outboxed")

    def delivered(self, pending: PendingEvent, message: Any) -> None:
        """The broker acknowledged an event; write the audit line (no event data: it may hold PII)."""
        self.stats.count("delivered")
        if self.audit_logging:
            audit(logger, PRODUCED, (message.topic(), message.partition(), message.offset(),
                                     pending.event.event_metadata.id, message.key()))

    def failed(self, pending: PendingEvent, reason: str, error: Any) -> None:
        """An event will not be delivered: log it once with everything needed to re-send it."""
        self.stats.count("failed", reason)
        try:
            description = pending.describe()
            logger.error(
                "Error delivering message to Kafka event bus. reason=%s error=%s %s", reason, error, description,
            )
            set_attribute("kafka_producer_error_reason", reason)
            record_error(EventProductionException(f"{reason}: {error} ({pending.full_topic})"))
        except Exception:
            logger.exception("Error delivering message to Kafka event bus; could not describe the event")
