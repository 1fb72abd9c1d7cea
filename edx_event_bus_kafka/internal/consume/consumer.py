"""``KafkaEventConsumer``: consume a topic and re-emit each event as its Django signal, at least once.

The loop is a small state machine over batches of messages::

    poll batch -> for each message: prepare -> decode -> emit -> settle -> commit batch (async)

Settling marks a message done (its offset becomes committable) when its receivers succeeded, when
it was dead-lettered, or when it is deliberately skipped. A failure is classified by the
:class:`ErrorPolicy` (retry / dead-letter / skip); the loop only carries out decisions. Nothing is
committed for a message that is not done, so a crash or kill re-delivers it.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from openedx_events.event_bus import EventBusConsumer

from edx_event_bus_kafka.internal.consume.dispatch import emit
from edx_event_bus_kafka.internal.consume.error_policy import Action, ErrorPolicy
from edx_event_bus_kafka.internal.consume.work_cycle import prepare_for_new_work_cycle
from edx_event_bus_kafka.internal.dead_letters.writer import (
    REDRIVE_GROUP,
    DeadLetterWriter,
    dead_letter_topic,
    provenance_headers,
)
from edx_event_bus_kafka.internal.errors import ConfigurationError, DeadLetterError
from edx_event_bus_kafka.internal.kafka.clients import new_consumer
from edx_event_bus_kafka.internal.kafka.commits import DoneOffsets
from edx_event_bus_kafka.internal.kafka.protocols import ConsumerClient
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch
from edx_event_bus_kafka.internal.kafka.seeking import offsets_at, parse_offset_time
from edx_event_bus_kafka.internal.runtime import monitoring
from edx_event_bus_kafka.internal.runtime.audit import CONSUMED, CONSUMER_LOGGER, audit
from edx_event_bus_kafka.internal.runtime.heartbeat import Heartbeat
from edx_event_bus_kafka.internal.runtime.worker import (
    EXIT_CONFIG,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_TOO_MANY_ERRORS,
    WorkerExit,
    stop_on_signals,
)
from edx_event_bus_kafka.internal.settings.clients import consumer_client_config, get_full_topic
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.internal.wire.decode import decode_message
from edx_event_bus_kafka.internal.wire.headers import HEADER_EVENT_TYPE, HEADER_ID, header_values, single_header

logger = logging.getLogger(CONSUMER_LOGGER)

#: Longest a blocking poll runs before the loop checks for a stop request.
STOP_CHECK_SEC = 0.25

#: Options accepted besides topic and group (also through ``consume_events --extra``).
KNOWN_OPTIONS = ("offset_time", "from_beginning", "event_types", "heartbeat_file")


class _TooManyErrors(Exception):
    """The consecutive-errors limit was reached."""


class KafkaEventConsumer(EventBusConsumer):
    """Consume ``topic`` (without prefix) in ``group_id`` and emit its events as Django signals.

    Options: ``offset_time`` (ISO 8601 with timezone: move the group to the first message at or
    after it on every partition, then keep consuming), ``from_beginning`` (the same, from the
    start of the topic), ``event_types`` (only these types are emitted; others are skipped),
    ``heartbeat_file`` (kept fresh while the loop makes progress, for ``event_bus_health``).

    Invalid options or settings do not raise here: they are logged at once and make
    ``consume_indefinitely`` exit with status 2, whichever ``consume_events`` command runs it.
    """

    def __init__(self, topic: str, group_id: str, offset_time: Any = None, **options: Any):
        self.topic = topic
        self.group_id = group_id
        self.consumer: Any = None
        self.problem: ConfigurationError | None = None
        self._stop = threading.Event()
        self._fatal_error: Any = None
        self._refusals = RefusalWatch(f"consumer of {topic!r} in group {group_id!r}")
        self._replay_pending = False
        self._consecutive_errors = 0
        self._dead_letters: DeadLetterWriter | None = None
        self.offsets = DoneOffsets()
        self._assigned: set[int] = set()
        try:
            unknown = sorted(set(options) - set(KNOWN_OPTIONS))
            if unknown:
                raise ConfigurationError([
                    f"unknown consumer option(s) {', '.join(unknown)}; known options: "
                    f"offset_time, {', '.join(KNOWN_OPTIONS[1:])}"
                ])
            self.settings = get_settings()
            self.offset_time = parse_offset_time(offset_time)
            self.from_beginning = bool(options.get("from_beginning", False))
            self.event_types = frozenset(options.get("event_types") or ())
            self.heartbeat = Heartbeat(options.get("heartbeat_file"), f"consume_events {topic}/{group_id}")
            self.full_topic = get_full_topic(topic, self.settings)
            self.policy = ErrorPolicy.from_settings(self.settings)
        except ConfigurationError as error:
            self.problem = error
            logger.error("Kafka event consumer for topic %r, group %r cannot start: %s", topic, group_id, error)

    def stop(self) -> None:
        """Ask the loop to stop after the current message (thread-safe; used by signal handlers and tests)."""
        self._stop.set()

    def consume_indefinitely(self) -> None:
        """Run until stopped. SIGTERM/SIGINT stop gracefully (in the main thread).

        Raises:
            WorkerExit: a ``SystemExit`` with status 1, 2 or 3 (see ``worker``), on fatal errors.

        """
        timeout = self.settings.consumer_shutdown_timeout_sec if self.problem is None else 1.0
        with stop_on_signals(self.stop, timeout):
            code = self.run()
        if code != EXIT_OK:
            raise WorkerExit(code, f"consumer for {self.topic!r} in {self.group_id!r} stopped with status {code}")

    def run(self) -> int:
        """The loop; returns an exit status (see ``worker``)."""
        if self.problem is not None:
            logger.error("Not consuming: %s", self.problem)
            return EXIT_CONFIG
        if not self.settings.consumers_enabled:
            logger.error("Kafka consumers not enabled, exiting.")
            return EXIT_OK
        self.consumer = self._new_consumer()
        self._replay_pending = self.offset_time is not None or self.from_beginning
        self.consumer.subscribe(
            [self.full_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        logger.info("Running consumer for full_topic=%r consumer_group=%r", self.full_topic, self.group_id)
        try:
            return self._loop()
        finally:
            self._close()

    def _loop(self) -> int:
        batch_size = self.settings.consumer_batch_size
        poll_timeout = self.settings.consumer_poll_timeout
        while not self._stop.is_set():
            if self._refusals.reason is not None:
                return EXIT_CONFIG  # logged by the watch; only new settings can help
            if self._fatal_error is not None:
                logger.error("Fatal Kafka consumer error, exiting: %s", self._fatal_error)
                return EXIT_FATAL
            try:
                messages = self._next_batch(batch_size, poll_timeout)
                self.heartbeat.beat()
                for message in messages:
                    if self._stop.is_set():
                        break  # the rest of the batch is not done, hence not committed
                    if message.error() is not None:
                        self._poll_error(message.error())
                    elif not self._handle(message):
                        break
                self.offsets.commit_async(self.consumer)
            except _TooManyErrors:
                logger.error("Too many consecutive errors, exiting (%d in a row)", self._consecutive_errors)
                return EXIT_TOO_MANY_ERRORS
        if self._refusals.reason is not None:
            return EXIT_CONFIG
        return EXIT_FATAL if self._fatal_error is not None else EXIT_OK

    def _next_batch(self, batch_size: int, poll_timeout: float) -> list[Any]:
        """Whatever is ready now, up to ``batch_size``; if nothing is, wait up to ``poll_timeout`` for one.

        ``consume(n, timeout)`` alone would hold a ready message back until ``n`` arrived or the
        timeout passed, adding up to a second of latency at low traffic.
        """
        messages = self.consumer.consume(num_messages=batch_size, timeout=0)
        if messages:
            return list(messages)
        # Wait in short slices so that a stop request is noticed quickly even with a long timeout.
        deadline = time.monotonic() + poll_timeout
        first = None
        while first is None and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            first = self.consumer.poll(min(remaining, STOP_CHECK_SEC))
        if first is None:
            return []
        return [first, *self.consumer.consume(num_messages=batch_size - 1, timeout=0)] if batch_size > 1 else [first]

    def _new_consumer(self) -> ConsumerClient:
        return new_consumer(consumer_client_config(self.group_id, self.settings), error_cb=self._on_client_error)

    def _on_client_error(self, error: Any) -> None:
        if self._refusals.seen(error):
            self._stop.set()
        elif error.fatal():
            self._fatal_error = error
            self._stop.set()
        elif self._refusals.reason is not None:
            return  # stopping anyway; "all brokers down" and the like add nothing to the refusal
        else:
            logger.warning("Kafka consumer error (librdkafka retries by itself): %s", error)

    # -- errors --------------------------------------------------------------------------------

    def _count_error(self) -> None:
        self._consecutive_errors += 1
        limit = self.settings.consumer_consecutive_errors_limit
        if limit and self._consecutive_errors >= limit:
            raise _TooManyErrors()

    def _poll_error(self, error: Any) -> None:
        from confluent_kafka import KafkaError

        if error.code() == KafkaError._PARTITION_EOF:
            return
        monitoring.set_attribute("kafka_error_fatal", error.fatal())
        monitoring.set_attribute("kafka_error_retriable", error.retriable())
        logger.error("Error polling Kafka for full_topic=%r consumer_group=%r: %s", self.full_topic, self.group_id,
                     error)
        if error.fatal():
            self._fatal_error = error
            self._stop.set()
            return
        self._count_error()
        self._stop.wait(self.settings.consumer_poll_failure_sleep)

    # -- one message ---------------------------------------------------------------------------

    def _handle(self, message: Any) -> bool:
        """Process one message until it is done; False if the loop must stop first (not done)."""
        headers = message.headers() or []
        self._audit_received(message, headers)
        monitoring.set_message_attributes(self.full_topic, message, headers)
        attempts = 0
        while True:
            try:
                prepare_for_new_work_cycle()
                if not self._skipped(message, headers):
                    signal, event_data, metadata = decode_message(message, headers)
                    emit(signal, event_data, metadata)
                self.offsets.done(message)
                self._consecutive_errors = 0
                self.heartbeat.beat()
                return True
            except Exception as error:  # noqa: BLE001 -- every failure goes through the error policy
                attempts += 1
                outcome = self._failed(message, headers, error, attempts)
                if outcome is not None:
                    return outcome

    def _skipped(self, message: Any, headers: list) -> bool:
        """Messages of types we were asked not to consume, or re-driven for another group, are not ours."""
        types = header_values(headers, HEADER_EVENT_TYPE)
        # A repeated ce_type is not skipped here: decoding reports it as unusable (dead letter).
        if self.event_types and len(types) == 1 and types[0] not in self.event_types:
            return True
        targets = header_values(headers, REDRIVE_GROUP)
        if targets and self.group_id not in targets:
            logger.debug("Skipping %s: re-driven for group(s) %s", _message_context(message, headers), targets)
            return True
        return False

    def _failed(self, message: Any, headers: list, error: Exception, attempts: int) -> bool | None:
        """Carry out the policy's decision: True (done), False (stop, not done) or None (try again)."""
        context = _message_context(message, headers)
        decision = self.policy.decide(error, attempts)
        monitoring.set_message_attributes(self.full_topic, message, headers, error=error)
        monitoring.record_error(error)
        logger.error(
            "Error consuming event from Kafka: %r in context full_topic=%r consumer_group=%r %s "
            "attempt=%d decision=%s (%s)",
            error, self.full_topic, self.group_id, context, attempts, decision.action.value, decision.reason,
        )
        self._count_error()
        if decision.action is Action.RETRY:
            return False if self._stop.wait(decision.delay) else None
        if decision.action is Action.SKIP:
            logger.warning("Skipping message %s (failure policy log_and_skip): it will not be processed", context)
            self.offsets.done(message)
            return True
        try:
            self._dead_letter(message, context, error, attempts)
        except DeadLetterError as dead_letter_error:
            # Never skip a message whose dead letter is not safely written: try it all again.
            logger.error("Could not dead-letter %s, will retry the message: %s", context, dead_letter_error)
            return False if self._stop.wait(self.policy.delay_after(attempts)) else None
        self.offsets.done(message)
        return True

    def _dead_letter(self, message: Any, context: str, error: Exception, attempts: int) -> None:
        if self._dead_letters is None:
            self._dead_letters = DeadLetterWriter(self.settings)
        topic = dead_letter_topic(self.full_topic, self.group_id, self.settings)
        self._dead_letters.write(topic, message, provenance_headers(message, self.group_id, error, attempts))
        logger.warning("Dead-lettered %s to %s after %d attempt(s): %r", context, topic,
                       attempts, error)

    def _audit_received(self, message: Any, headers: list) -> None:
        if not self.settings.audit_logging_enabled:
            return
        try:
            timestamp_type, timestamp_ms = message.timestamp()
            audit(logger, CONSUMED, (
                message.topic(), message.partition(), message.offset(), single_header(headers, HEADER_ID),
                message.key(), timestamp_ms if timestamp_type else "none",
            ))
        except Exception as error:  # noqa: BLE001 -- audit logging must never break the loop
            monitoring.set_attribute("kafka_logging_error", repr(error))

    # -- rebalancing and shutdown --------------------------------------------------------------

    # The callbacks work with both rebalance styles: eager (classic protocol, the whole assignment
    # each time) and incremental (cooperative-sticky, or the KIP-848 consumer protocol: only what
    # changes). They never call assign() themselves, which the two styles spell differently.

    def _on_assign(self, consumer: Any, partitions: list) -> None:
        self._assigned.update(p.partition for p in partitions)
        logger.info("Assigned partitions %s; consuming partitions %s",
                    sorted(p.partition for p in partitions), sorted(self._assigned))
        if not self._replay_pending:
            return
        self._replay_pending = False
        when = None if self.from_beginning and self.offset_time is None else self.offset_time
        targets = offsets_at(consumer, self.full_topic, when)
        # Committed before the assignment takes effect, so fetching starts from these offsets; the
        # commit moves the whole group, not only the partitions assigned to this worker.
        consumer.commit(offsets=targets, asynchronous=False)
        logger.info("Replaying from %s: offsets %s", when.isoformat() if when else "the beginning",
                    {t.partition: t.offset for t in targets})

    def _on_revoke(self, consumer: Any, partitions: list) -> None:
        try:
            self.offsets.commit_sync(consumer, partitions)
        except Exception:
            logger.exception("Could not commit offsets of revoked partitions; their messages will be re-delivered")
        self.offsets.forget(partitions)
        self._assigned.difference_update(p.partition for p in partitions)
        logger.info("Revoked partitions %s; consuming partitions %s",
                    sorted(p.partition for p in partitions), sorted(self._assigned))

    def _on_lost(self, _consumer: Any, partitions: list) -> None:
        lost = [p.partition for p in partitions]
        logger.warning("Lost partitions %s; uncommitted messages will be re-delivered", lost)
        self.offsets.forget(partitions)
        self._assigned.difference_update(lost)

    def _close(self) -> None:
        try:
            self.offsets.commit_sync(self.consumer)
        except Exception:
            logger.exception("Could not commit final offsets; the last messages will be re-delivered")
        try:
            self.consumer.close()  # leaves the group, so partitions move at once
        finally:
            self.heartbeat.clear()
            if self._dead_letters is not None:
                self._dead_letters.close()
            logger.info("Consumer for full_topic=%r consumer_group=%r closed", self.full_topic, self.group_id)


def _message_context(message: Any, headers: Any) -> str:
    return (
        f"topic={message.topic()} partition={message.partition()} offset={message.offset()} "
        f"event_id={single_header(headers, HEADER_ID)} event_type={single_header(headers, HEADER_EVENT_TYPE)}"
    )


__all__ = ["KNOWN_OPTIONS", "KafkaEventConsumer"]
