"""Produce openedx-events signals to Kafka: ``create_producer()`` and ``KafkaEventProducer``.

``send`` never raises into the caller. It picks the delivery mode (``immediate`` or ``on_commit``),
then encodes the event (key and value Avro, CloudEvents headers) and hands it to librdkafka; a
background thread polls for delivery reports. Failures at any step are logged once with what is
needed to re-send the event, counted and recorded in monitoring (see ``delivery``).
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from django.db import transaction
from openedx_events.data import EventsMetadata
from openedx_events.event_bus import EventBusProducer
from openedx_events.tooling import OpenEdxPublicSignal

from edx_event_bus_kafka.internal.kafka.clients import ProducerHandle
from edx_event_bus_kafka.internal.kafka.protocols import ProducerClient
from edx_event_bus_kafka.internal.kafka.reachability import BrokerWatch
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch
from edx_event_bus_kafka.internal.produce import shutdown
from edx_event_bus_kafka.internal.produce.delivery import DeliveryRecorder, OutgoingEvent, PendingEvent, ProducerStats
from edx_event_bus_kafka.internal.runtime.audit import PRODUCER_LOGGER
from edx_event_bus_kafka.internal.runtime.log_repeats import log_collapsed
from edx_event_bus_kafka.internal.settings.clients import get_full_topic, producer_client_config
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, get_settings, on_settings_changed
from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import encoder_for

logger = logging.getLogger(PRODUCER_LOGGER)

# When librdkafka's local queue is full, wait this long for room once before giving up on an event.
QUEUE_FULL_WAIT_SEC = 0.5
# Flushing waits in slices this long, so that a broker refusing us ends the wait early.
FLUSH_SLICE_SEC = 0.2


class KafkaEventProducer(EventBusProducer):
    """The event bus producer: one per process (use ``create_producer()``), thread-safe.

    ``client`` may be given (a confluent-kafka ``Producer``, as the reference accepts); by default
    one is built from settings. After a fatal librdkafka error (for example an idempotence sequence
    error after a broker loss), or once its deliveries keep failing while the broker answers (a
    broker restarted without its producer state), a client built from settings is replaced instead of
    failing every later event.
    """

    def __init__(self, client: ProducerClient | None = None, *, settings: EventBusSettings | None = None):
        self.settings = settings or get_settings()
        self.recorder = DeliveryRecorder(audit_logging=self.settings.audit_logging_enabled)
        self._client_lock = threading.Lock()
        self.refusals = RefusalWatch("event bus producer")
        self._closed = threading.Event()
        self._flusher: Any = None
        self._clients = ProducerHandle(
            producer_client_config(self.settings), name="producer", refusals=self.refusals, client=client,
            on_error=lambda error: log_collapsed(logger, logging.WARNING,
                                                 f"Kafka producer error (librdkafka retries by itself): {error}"),
            brokers=BrokerWatch(logger, "producer"),
        )
        self._poller = threading.Thread(
            target=_poll_until_closed, args=(weakref.ref(self), self._closed, self.settings.poll_interval_sec),
            name="kafka-producer-poll", daemon=True,
        )
        self._poller.start()

    @property
    def stats(self) -> ProducerStats:
        """Counts of sent, delivered and failed events."""
        return self.recorder.stats

    @property
    def client(self) -> ProducerClient:
        """The librdkafka producer in use (a new one after it could no longer deliver, unless it was given)."""
        return self._clients.client

    def send(
        self, *, signal: OpenEdxPublicSignal, topic: str, event_key_field: str, event_data: dict,
        event_metadata: EventsMetadata,
    ) -> None:
        """Send one event to the bus under ``topic`` (without prefix); never raises.

        Arguments mirror ``openedx_events.event_bus.EventBusProducer.send``.
        """
        event = OutgoingEvent(signal, topic, event_key_field, event_data, event_metadata)
        try:
            mode = self.settings.delivery_mode_for(signal.event_type, topic)
            if mode == "outbox":
                self._write_to_outbox(event)
            elif mode == "on_commit" and self._in_transaction():
                transaction.on_commit(functools.partial(self.produce_now, event),
                                      using=self.settings.transaction_database)
            else:
                self.produce_now(event)
        except Exception as error:  # noqa: BLE001 -- send must never raise into the caller's request
            self.recorder.failed(PendingEvent(self.recorder, event, topic), "send", repr(error))

    def _write_to_outbox(self, event: OutgoingEvent) -> None:
        """Store the event in the outbox, in the caller's transaction.

        The insert runs in a savepoint, so a failure here cannot break the caller's transaction.
        When so configured, the rows are published right after commit.
        """
        from edx_event_bus_kafka.internal.outbox import publisher as outbox

        database = self.settings.transaction_database
        try:
            with transaction.atomic(using=database):
                outbox.write(event, self.settings)
        except Exception as error:  # noqa: BLE001 -- logged with full context for re-sending
            self.recorder.failed(PendingEvent(self.recorder, event, event.topic), "outbox", repr(error))
            return
        self.recorder.count_outbox()
        if self.settings.outbox_publish_on_commit:
            transaction.on_commit(self._outbox_flusher().notify, using=database)

    def _outbox_flusher(self) -> Any:
        if self._flusher is None:
            with self._client_lock:
                if self._flusher is None:
                    from edx_event_bus_kafka.internal.outbox.relay import OutboxFlusher

                    self._flusher = OutboxFlusher(self.settings)
        return self._flusher

    def _in_transaction(self) -> bool:
        return transaction.get_connection(self.settings.transaction_database).in_atomic_block

    def produce_now(self, event: OutgoingEvent) -> None:
        """Encode and enqueue one event now, whatever the delivery mode; failures are recorded, not raised."""
        pending = PendingEvent(self.recorder, event, event.topic)
        stage = "serialization"
        try:
            pending.full_topic = get_full_topic(event.topic, self.settings)
            key, value = encoder_for(event.signal, event.event_key_field, pending.full_topic).encode(event.event_data)
            headers = headers_from_metadata(event.event_metadata)
            stage = "produce"
            self._enqueue(key, value, headers, pending)
        except Exception as error:  # noqa: BLE001 -- recorded with full context; the caller must not see it
            self.recorder.failed(pending, stage, repr(error))

    def _enqueue(self, key: bytes, value: bytes, headers: list, pending: PendingEvent) -> None:
        topic = pending.full_topic
        client = self.client
        try:
            client.produce(topic, value=value, key=key, headers=headers, on_delivery=pending)
        except BufferError:
            # The local queue is full (broker slow or down): serve delivery reports, then try once more.
            self._clients.poll(QUEUE_FULL_WAIT_SEC)
            try:
                client.produce(topic, value=value, key=key, headers=headers, on_delivery=pending)
            except BufferError as error:
                self.recorder.failed(pending, "local_queue_full", error)
                return
        self.recorder.sent()
        # Serve delivery reports that are ready in this thread, in batches: handing them to the
        # background thread instead makes the two threads fight over the GIL and the log handler.
        self._clients.poll(0)

    def prepare_for_shutdown(self, timeout: float | None = None) -> int:
        """Deliver buffered events, waiting at most ``timeout`` seconds (default: the flush setting).

        Events still unacknowledged afterwards are purged, which fails (and so logs, with their full
        context) each of them. Returns how many were left undelivered.
        """
        timeout = self.settings.producer_flush_timeout_sec if timeout is None else timeout
        remaining = self._flush(timeout)
        if remaining:
            logger.error("%d events were not acknowledged within %.1f s; logging each for re-sending",
                         remaining, timeout)
            self.client.purge()
            self.client.flush(0)
        return int(remaining)

    def _flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for acknowledgements; give up early if the broker refuses us."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = int(self.client.flush(max(0.0, min(FLUSH_SLICE_SEC, deadline - time.monotonic()))))
            if not remaining or self.refusals.reason is not None or time.monotonic() >= deadline:
                return remaining

    def close(self, timeout: float | None = None) -> int:
        """Flush (see ``prepare_for_shutdown``) and stop the polling thread."""
        remaining = self.prepare_for_shutdown(timeout)
        self._closed.set()
        if self._flusher is not None:
            self._flusher.close()
        return remaining


def _poll_until_closed(producer_ref: Callable[[], KafkaEventProducer | None], closed: threading.Event,
                       interval: float) -> None:
    """Serve delivery reports every ``interval`` s until the producer is closed or garbage-collected.

    ``send`` serves reports too; this thread makes sure the last events' reports (and audit lines)
    come even when nothing more is sent.
    """
    while not closed.wait(interval):
        producer = producer_ref()
        if producer is None:
            return
        try:
            producer._clients.replace_if_stuck(producer.recorder.stuck)  # only here: it may wait for the broker
            producer._clients.poll(0)  # a fatal error raised here gets the client replaced on the next turn
        except Exception:
            logger.exception("Kafka producer poll loop error (continuing)")
        finally:
            del producer  # hold no strong reference while waiting


_singleton: KafkaEventProducer | None = None
_singleton_pid: int | None = None
_singleton_lock = threading.Lock()


def create_producer() -> KafkaEventProducer | None:
    """The process's producer, created on first call (``EVENT_BUS_PRODUCER`` points here).

    Returns ``None`` with a warning when ``EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS`` is not set, so
    openedx-events falls back to its no-op producer. A forked child gets its own producer
    (librdkafka threads do not survive ``fork``).

    Raises:
        ConfigurationError: the settings are invalid (the message names each bad setting).

    """
    global _singleton, _singleton_pid  # noqa: PLW0603 -- one producer per process, by design
    settings = get_settings()
    if not settings.bootstrap_servers:
        logger.warning("Cannot create the Kafka event bus producer: EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set")
        return None
    with _singleton_lock:
        if _singleton is None or _singleton_pid != os.getpid():
            _singleton = KafkaEventProducer(settings=settings)
            _singleton_pid = os.getpid()
            shutdown.register_flush(_singleton.prepare_for_shutdown, on_sigterm=settings.producer_flush_on_sigterm)
        return _singleton


def forget_producer(timeout: float = 1.0) -> None:
    """Close and drop the process's producer (settings changed, or tests)."""
    global _singleton
    with _singleton_lock:
        producer, _singleton = _singleton, None
    if producer is not None:
        shutdown.unregister_flush(producer.prepare_for_shutdown)
        producer.close(timeout)


on_settings_changed(forget_producer)
