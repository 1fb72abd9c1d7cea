"""The transactional outbox: write events in the caller's transaction, publish them after commit.

Guarantees (also in docs/how-to/outbox.rst):

* A rolled-back transaction publishes nothing; a committed one publishes every event.
* Writing needs neither the broker nor the schema registry.
* Rows are published in id order and marked published only after the broker acknowledged them, so
  a crash between the two re-publishes them (at least once; a duplicate keeps its ``ce_id``).
* Publishers (relays, and producing processes right after commit) take the oldest pending rows
  with ``SELECT ... FOR UPDATE`` in one transaction, so on PostgreSQL/MySQL two of them never
  publish the same row or overtake each other (per-key order holds). SQLite has no row locks:
  run a single publisher there (set ``EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT = False`` and one
  relay), or accept occasional duplicates.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from openedx_events.data import EventsMetadata
from openedx_events.tooling import OpenEdxPublicSignal

from edx_event_bus_kafka.internal.errors import PermanentRowError
from edx_event_bus_kafka.internal.kafka.clients import Outgoing, ProducerHandle, produce_and_wait
from edx_event_bus_kafka.internal.kafka.protocols import ProducerClient
from edx_event_bus_kafka.internal.kafka.reachability import BrokerWatch
from edx_event_bus_kafka.internal.kafka.recovery import StuckClient
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch
from edx_event_bus_kafka.internal.produce.delivery import OutgoingEvent
from edx_event_bus_kafka.internal.runtime.log_repeats import log_collapsed
from edx_event_bus_kafka.internal.settings.clients import get_full_topic, producer_client_config
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, get_settings
from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.records import event_data_to_record
from edx_event_bus_kafka.internal.wire.serialization import encoder_for

logger = logging.getLogger(__name__)


def write(event: OutgoingEvent, settings: EventBusSettings) -> int:
    """Store one event as an outbox row in the current transaction of the outbox database; its id."""
    from edx_event_bus_kafka.models import OutboxEvent

    row = OutboxEvent.objects.using(settings.transaction_database).create(
        topic=event.topic,
        event_type=event.signal.event_type,
        event_key_field=event.event_key_field,
        event_id=str(event.event_metadata.id),
        event_data=json.dumps(event_data_to_record(event.event_data), sort_keys=True),
        event_metadata=event.event_metadata.to_json(),
    )
    return int(row.id)


def encode_row(row: Any, settings: EventBusSettings) -> tuple[str, bytes, bytes, list]:
    """Full topic, key, value and headers of an outbox row. Registry errors propagate (retriable)."""
    try:
        signal = OpenEdxPublicSignal.get_signal_by_type(row.event_type)
        record = json.loads(row.event_data)
        metadata = EventsMetadata.from_json(row.event_metadata)
        full_topic = get_full_topic(row.topic, settings)
        encoder = encoder_for(signal, row.event_key_field, full_topic)
    except (KeyError, ValueError, TypeError) as error:
        raise PermanentRowError(f"{type(error).__name__}: {error}") from error
    try:
        key, value = encoder.encode_record(record)
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise PermanentRowError(f"{type(error).__name__}: {error}") from error
    return full_topic, key, value, headers_from_metadata(metadata)


def _refused_for_good(error: Any) -> bool:
    """Whether ``produce()`` refused the message itself (too large, say), so that the row can never go out.

    Delivery-report errors, a full local queue and a client in a fatal state (rebuilt for the next
    pass) leave the row pending instead.
    """
    from confluent_kafka import KafkaError

    if not isinstance(error, Exception) or isinstance(error, BufferError):
        return False
    cause = error.args[0] if error.args else None
    if not isinstance(cause, KafkaError):
        return True
    return not (cause.fatal() or cause.retriable() or cause.code() == KafkaError._FATAL)


@dataclass
class BatchResult:
    """What one publishing pass did."""

    published: int = 0
    produced: int = 0  # handed to the Kafka client (the others could not be encoded)
    failed_permanently: int = 0
    left_pending: int = 0
    errors: list[str] = field(default_factory=list)


class OutboxPublisher:
    """Publishes pending outbox rows in id order and marks them; used by the relay and after commit."""

    def __init__(self, settings: EventBusSettings | None = None):
        self.settings = settings or get_settings()
        self.refusals = RefusalWatch("outbox publisher")
        #: Passes in a row that delivered nothing: a client the broker keeps rejecting is replaced.
        self.stuck = StuckClient()
        config = producer_client_config(self.settings)
        # Never give up on a row because of a slow broker within one pass; the pass has its own timeout.
        config.setdefault("message.timeout.ms", int(self.settings.outbox_delivery_timeout_sec * 1000))
        self._producer = ProducerHandle(
            config, name="outbox publisher", refusals=self.refusals,
            on_error=lambda error: log_collapsed(
                logger, logging.WARNING, f"Kafka outbox publisher error (librdkafka retries by itself): {error}"),
            brokers=BrokerWatch(logger, "outbox publisher"),
        )

    @property
    def producer(self) -> ProducerClient:
        """The producer client in use (a new one after it could no longer deliver)."""
        return self._producer.client

    def _rebuild_if_stuck(self) -> None:
        """Replace a producer that can no longer deliver (see ``recovery``); the rows stay pending."""
        self._producer.replace_if_stuck(self.stuck)

    def _poll(self, timeout: float) -> bool:
        """Serve callbacks; False once the client raised a fatal error (it is then replaced on next use)."""
        return self._producer.poll(timeout)

    def publish_batch(self) -> BatchResult:
        """Take the oldest pending rows (locked), publish, wait for acks, mark; one transaction."""
        from edx_event_bus_kafka.models import OutboxEvent

        self._poll(0)  # serve client errors even when idle: a refusing broker is noticed at once
        self._rebuild_if_stuck()  # a fatal error may have come in between passes
        result = BatchResult()
        database = self.settings.transaction_database
        with transaction.atomic(using=database):
            rows = list(
                OutboxEvent.objects.using(database).select_for_update()
                .filter(status=OutboxEvent.PENDING).order_by("id")[: self.settings.outbox_batch_size]
            )
            if not rows:
                return result
            outcomes = self._send(rows, result)
            self._mark(rows, outcomes, result)
        self.stuck.passed(attempted=result.produced, delivered=result.published)
        self._rebuild_if_stuck()
        return result

    def _send(self, rows: list, result: BatchResult) -> dict[int, Any]:
        """Produce every encodable row and wait for the acks; returns row id -> error (None = delivered)."""
        outcomes: dict[int, Any] = {}
        sent: list[tuple[int, Outgoing]] = []
        for row in rows:
            try:
                topic, key, value, headers = encode_row(row, self.settings)
            except PermanentRowError as error:
                outcomes[row.id] = error
                continue
            except Exception as error:  # noqa: BLE001 -- registry down and the like: retry the row later
                outcomes[row.id] = error
                result.errors.append(f"row {row.id}: {error!r}")
                break  # later rows (maybe with the same key) must not overtake this one
            sent.append((row.id, Outgoing(topic, key, value, headers)))
        result.produced = len(sent)
        delivered = produce_and_wait(self.producer, [message for _, message in sent],
                                     self.settings.outbox_delivery_timeout_sec,
                                     give_up=lambda: self.refusals.reason is not None,
                                     on_fatal=self._producer.fatal_raised)
        for (row_id, _), outcome in zip(sent, delivered, strict=True):
            if outcome.delivered:
                outcomes[row_id] = None
            elif _refused_for_good(outcome.error):
                outcomes[row_id] = PermanentRowError(f"{type(outcome.error).__name__}: {outcome.error}")
            else:
                outcomes[row_id] = outcome.reason
        return outcomes

    def _mark(self, rows: list, outcomes: dict[int, Any], result: BatchResult) -> None:
        from edx_event_bus_kafka.models import OutboxEvent

        now = timezone.now()
        published, failed = [], []
        for row in rows:
            outcome = outcomes.get(row.id, "not acknowledged in time")
            if outcome is None:
                published.append(row.id)
            elif isinstance(outcome, PermanentRowError):
                failed.append((row, str(outcome)))
            else:
                result.left_pending += 1
                result.errors.append(f"row {row.id} event {row.event_id}: {outcome}")
        manager = OutboxEvent.objects.using(self.settings.transaction_database)
        if published:
            if self.settings.outbox_retention_sec == 0:
                manager.filter(id__in=published).delete()
            else:
                manager.filter(id__in=published).update(status=OutboxEvent.PUBLISHED, published_at=now)
        for row, error in failed:
            logger.error("Outbox row %s (event %s, %s) can never be published and is moved aside: %s",
                         row.id, row.event_id, row.event_type, error)
            manager.filter(id=row.id).update(status=OutboxEvent.FAILED, last_error=error[:4000],
                                             attempts=row.attempts + 1)
        result.published += len(published)
        result.failed_permanently += len(failed)

    def purge(self) -> int:
        """Delete published rows older than the retention setting; returns how many."""
        from edx_event_bus_kafka.models import OutboxEvent

        cutoff = timezone.now() - timedelta(seconds=self.settings.outbox_retention_sec)
        deleted, _ = OutboxEvent.objects.using(self.settings.transaction_database).filter(
            status=OutboxEvent.PUBLISHED, published_at__lt=cutoff).delete()
        return int(deleted)

    def close(self) -> None:
        """Deliver anything still queued (normally nothing: every pass waits for its acks)."""
        if self.refusals.reason is not None:
            self.producer.purge()  # nothing can be delivered; the rows stay pending
        self.producer.flush(0 if self.refusals.reason is not None else 5)


def backlog(settings: EventBusSettings | None = None) -> dict[str, Any]:
    """Pending and failed row counts and the age in seconds of the oldest pending row."""
    from django.db.models import Count, Min

    from edx_event_bus_kafka.models import OutboxEvent

    settings = settings or get_settings()
    manager = OutboxEvent.objects.using(settings.transaction_database)
    pending = manager.filter(status=OutboxEvent.PENDING).aggregate(count=Count("id"), oldest=Min("created"))
    oldest = pending["oldest"]
    return {
        "pending": pending["count"],
        "failed": manager.filter(status=OutboxEvent.FAILED).count(),
        "oldest_pending_age_sec": (timezone.now() - oldest).total_seconds() if oldest else None,
    }
