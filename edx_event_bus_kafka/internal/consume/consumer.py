"""``KafkaEventConsumer``: consume a topic and re-emit each event as its Django signal, at least once.

The poll loop (``parallel.ParallelLoop``) only fetches, hands messages to worker threads and
commits; the threads do, per message::

    prepare -> decode -> emit -> settle

Settling marks a message done (its offset becomes committable) when its receivers succeeded, when
it was dead-lettered, or when it is deliberately skipped. A failure is classified by the
:class:`ErrorPolicy` (retry / dead-letter / skip); the loop only carries out decisions. Nothing is
committed for a message that is not done, so a crash or kill re-delivers it. A retry waits in its
lane, never in the poll loop, so the worker keeps polling, heartbeating and serving rebalances
however long a retry takes (librdkafka's ``max.poll.interval.ms`` is never exceeded by a retry).
With the default concurrency of 1, one thread processes one message at a time in partition order.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from openedx_events.event_bus import EventBusConsumer

from edx_event_bus_kafka.internal.consume.dispatch import emit
from edx_event_bus_kafka.internal.consume.error_policy import Action, ErrorPolicy
from edx_event_bus_kafka.internal.consume.lanes import ORDERINGS
from edx_event_bus_kafka.internal.consume.parallel import ParallelLoop
from edx_event_bus_kafka.internal.consume.replay import Replay
from edx_event_bus_kafka.internal.dead_letters.writer import (
    REDRIVE_GROUP,
    DeadLetterWriter,
    dead_letter_topic,
    provenance_headers,
)
from edx_event_bus_kafka.internal.errors import ConfigurationError, DeadLetterError, InvalidSetting, ReceiverError
from edx_event_bus_kafka.internal.inbox.deduplication import Deduplicator
from edx_event_bus_kafka.internal.kafka.clients import new_consumer
from edx_event_bus_kafka.internal.kafka.protocols import ConsumerClient
from edx_event_bus_kafka.internal.kafka.reachability import BrokerWatch
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch
from edx_event_bus_kafka.internal.kafka.seeking import parse_offset_time
from edx_event_bus_kafka.internal.runtime import monitoring
from edx_event_bus_kafka.internal.runtime.audit import CONSUMED, CONSUMER_LOGGER, ReadableKey, audit
from edx_event_bus_kafka.internal.runtime.heartbeat import Heartbeat
from edx_event_bus_kafka.internal.runtime.log_repeats import log_collapsed
from edx_event_bus_kafka.internal.runtime.worker import (
    EXIT_CONFIG,
    EXIT_OK,
    ConsecutiveErrors,
    WorkerExit,
    stop_on_signals,
)
from edx_event_bus_kafka.internal.settings.clients import consumer_client_config, get_full_topic
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.internal.settings.parsers import choice, positive_int
from edx_event_bus_kafka.internal.wire.headers import HEADER_EVENT_TYPE, HEADER_ID, header_values, single_header

logger = logging.getLogger(CONSUMER_LOGGER)

#: Longest a blocking poll runs before the loop checks for a stop request.
STOP_CHECK_SEC = 0.25

#: Options accepted besides topic and group (also through ``consume_events --extra``).
KNOWN_OPTIONS = ("offset_time", "from_beginning", "event_types", "heartbeat_file", "concurrency", "ordering")


class _TooManyErrors(Exception):
    """The consecutive-errors limit was reached."""


class KafkaEventConsumer(EventBusConsumer):
    """Consume ``topic`` (without prefix) in ``group_id`` and emit its events as Django signals.

    Options: ``offset_time`` (ISO 8601 with timezone: move the group to the first message at or
    after it on every partition, then keep consuming; once per requested time, see ``replay``),
    ``from_beginning`` (the same, from the start of the topic), ``event_types`` (only these types
    are emitted; others are skipped), ``heartbeat_file`` (kept fresh while the loop makes progress,
    for ``event_bus_health``).

    Invalid options or settings do not raise here: they are logged at once and make
    ``consume_indefinitely`` exit with status 2, whichever ``consume_events`` command runs it.
    """

    def __init__(self, topic: str, group_id: str, offset_time: Any = None, **options: Any):
        self.topic = topic
        self.group_id = group_id
        self.consumer: ConsumerClient | None = None  # made by run()
        self.problem: ConfigurationError | None = None
        self._stop = threading.Event()
        self._fatal_error: Any = None
        self._refusals = RefusalWatch(f"consumer of {topic!r} in group {group_id!r}")
        self._brokers = BrokerWatch(logger, "consumer")
        #: The librdkafka options of the client (set when it is made).
        self.client_config: dict[str, Any] = {}
        self._replay: Replay | None = None
        self._errors = ConsecutiveErrors(None)
        self._dead_letters: DeadLetterWriter | None = None
        self._dead_letter_lock = threading.Lock()
        self._parallel: ParallelLoop | None = None  # the poll loop and its worker threads, while running
        self.commit_metadata: str | None = None  # goes with every offset commit (a replay's marker)
        self.skipped_other_types = 0  # messages not of the requested event types (counted in the poll thread)
        self.outcomes: Counter[str] = Counter()  # processed / retried / dead_lettered / skipped, for the exit summary
        self._outcomes_lock = threading.Lock()
        self._assigned: set[int] = set()
        self.inbox: Deduplicator | None = None  # EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION
        try:
            unknown = sorted(set(options) - set(KNOWN_OPTIONS))
            if unknown:
                raise ConfigurationError([
                    f"unknown consumer option(s) {', '.join(unknown)}; known options: "
                    f"offset_time, {', '.join(KNOWN_OPTIONS[1:])}"
                ])
            self.settings = get_settings()
            if not self.settings.bootstrap_servers:
                raise ConfigurationError(["EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set: there is no broker to "
                                          "consume from"])
            self._errors = ConsecutiveErrors(self.settings.worker_consecutive_errors_limit)
            self.offset_time = parse_offset_time(offset_time)
            self.from_beginning = bool(options.get("from_beginning", False))
            self.event_types = frozenset(options.get("event_types") or ())
            _check_event_types(self.event_types)
            self.heartbeat = Heartbeat(options.get("heartbeat_file"), f"consume_events {topic}/{group_id}",
                                       state=self._doing)
            self.full_topic = get_full_topic(topic, self.settings)
            self.policy = ErrorPolicy.from_settings(self.settings)
            self.concurrency = _option(options, "concurrency", self.settings.consumer_concurrency, positive_int)
            self.ordering = _option(options, "ordering", self.settings.consumer_ordering, choice(*ORDERINGS))
            self.inbox = Deduplicator.for_group(group_id, self.settings)
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
        timeout = self.settings.worker_shutdown_timeout_sec if self.problem is None else 1.0
        with stop_on_signals(self.stop, timeout):
            code = self.run()
        if code != EXIT_OK:
            raise WorkerExit(code, f"consumer for {self.topic!r} in {self.group_id!r} stopped with status {code}")

    def run(self) -> int:
        """The loop; returns an exit status (see ``worker``)."""
        if self.problem is not None:
            return EXIT_CONFIG  # logged once, when the consumer was made
        if not self.settings.consumers_enabled:
            logger.error("Kafka consumers not enabled, exiting.")
            return EXIT_OK
        self.consumer = consumer = self._new_consumer()
        if self.offset_time is not None or self.from_beginning:  # --offset-time wins over --from-beginning
            self._replay = Replay(self.full_topic, self.offset_time)
            self.commit_metadata = self._replay.marker  # every commit says the replay was done (see replay)
        consumer.subscribe(
            [self.full_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        logger.info("Running consumer for full_topic=%r consumer_group=%r", self.full_topic, self.group_id)
        if self.event_types:
            logger.info("Consuming only event types %s; messages of other types are skipped (and committed)",
                        ", ".join(sorted(self.event_types)))
        # One thread processes one message at a time per partition, as the reference does.
        ordering = self.ordering if self.concurrency > 1 else "partition"
        self._parallel = ParallelLoop(self, self.concurrency, ordering, self.settings.consumer_max_in_flight)
        try:
            return self._parallel.run()
        finally:
            self._close()

    def _next_batch(self, batch_size: int, poll_timeout: float, wake: Callable[[], bool] | None = None) -> list[Any]:
        """Whatever is ready now, up to ``batch_size``; if nothing is, wait up to ``poll_timeout`` for one.

        ``consume(n, timeout)`` alone would hold a ready message back until ``n`` arrived or the
        timeout passed, adding up to a second of latency at low traffic. The wait also ends early
        when ``wake()`` says the caller has something to do (a commit that is due).
        """
        messages = self.client.consume(num_messages=batch_size, timeout=0)
        if messages:
            return list(messages)
        # Wait in short slices so that a stop request is noticed quickly even with a long timeout.
        deadline = time.monotonic() + poll_timeout
        first = None
        while first is None and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (wake is not None and wake()):
                return []
            first = self.client.poll(min(remaining, STOP_CHECK_SEC))
        if first is None:
            return []
        return [first, *self.client.consume(num_messages=batch_size - 1, timeout=0)] if batch_size > 1 else [first]

    @property
    def client(self) -> ConsumerClient:
        """The Kafka consumer client of the running loop (made by ``run``)."""
        if self.consumer is None:
            raise RuntimeError("the consumer's client exists only while run() runs")
        return self.consumer

    def _doing(self) -> dict[str, Any]:
        """For the heartbeat file: the partitions consumed now and the brokers that cannot be reached."""
        return {"partitions": sorted(self._assigned), "unreachable": self._brokers.lost}

    def _new_consumer(self) -> ConsumerClient:
        self.client_config = consumer_client_config(self.group_id, self.settings)
        return new_consumer(self._brokers.configure(self.client_config), error_cb=self._on_client_error)

    def _on_client_error(self, error: Any) -> None:
        self._brokers.error(error)
        if self._refusals.seen(error):
            self._stop.set()
        elif error.fatal():
            self._fatal_error = error
            self._stop.set()
        elif self._refusals.reason is not None:
            return  # stopping anyway; "all brokers down" and the like add nothing to the refusal
        else:
            log_collapsed(logger, logging.WARNING, f"Kafka consumer error (librdkafka retries by itself): {error}")

    # -- errors --------------------------------------------------------------------------------

    def _count_error(self) -> None:
        if self._errors.failed():
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

    def deliver(self, message: Any, signal: Any, event_data: dict[str, Any], metadata: Any) -> None:
        """Emit a decoded event; through the inbox (which skips duplicates) when the group deduplicates.

        Called by the loop's worker threads. Raises what ``emit`` raises.
        """
        if self.inbox is not None:
            self.inbox.emit(message, signal, event_data, metadata)
        else:
            emit(signal, event_data, metadata)

    def _skipped(self, message: Any, headers: list) -> bool:
        """Messages of types we were asked not to consume, or re-driven for another group, are not ours."""
        types = header_values(headers, HEADER_EVENT_TYPE)
        # A repeated ce_type is not skipped here: decoding reports it as unusable (dead letter).
        if self.event_types and len(types) == 1 and types[0] not in self.event_types:
            self.skipped_other_types += 1
            return True
        targets = header_values(headers, REDRIVE_GROUP)
        if targets and self.group_id not in targets:
            logger.debug("Skipping %s: re-driven for group(s) %s", _message_context(message, headers), targets)
            return True
        return False

    def settle_failure(self, message: Any, headers: list, error: Exception, attempts: int) -> float | None:
        """Log a failed attempt and carry out the policy's decision for it.

        Returns None when the message is done (skipped, or dead-lettered with the broker's
        acknowledgement), else the seconds to wait before the next attempt, which the loop schedules
        in the message's lane.

        Raises:
            _TooManyErrors: the consecutive-errors limit was reached.

        """
        context = _message_context(message, headers)
        decision = self.policy.decide(error, attempts)
        monitoring.set_message_attributes(self.full_topic, message, headers, error=error)
        monitoring.record_error(error)
        logger.error(
            "Error consuming event from Kafka: %r in context full_topic=%r consumer_group=%r %s "
            "attempt=%d decision=%s (%s)",
            error, self.full_topic, self.group_id, context, attempts, decision.action.value, decision.reason,
        )
        if (isinstance(error, ReceiverError) and decision.reason != "database unavailable"
                and (attempts == 1 or decision.action is not Action.RETRY)):
            # The receiver's own traceback, on the first attempt and the last: without an APM agent it is the
            # only record of where the receiver failed. Retries in between would only repeat it.
            for cause in error.causes:
                logger.error("Receiver traceback for %s attempt=%d:", context, attempts,
                             exc_info=(type(cause), cause, cause.__traceback__))
        self._count_error()
        if decision.action is Action.RETRY:
            self.count("retried")
            return decision.delay
        if decision.action is Action.SKIP:
            self.count("skipped")
            logger.warning("Skipping message %s (failure policy log_and_skip): it will not be processed", context)
            return None
        try:
            self._dead_letter(message, context, error, attempts)
        except DeadLetterError as dead_letter_error:
            # Never skip a message whose dead letter is not safely written: try it all again.
            logger.error("Could not dead-letter %s, will retry the message: %s", context, dead_letter_error)
            self.count("retried")
            return self.policy.delay_after(attempts)
        self.count("dead_lettered")
        return None

    def count(self, outcome: str) -> None:
        """Count one message outcome (thread-safe: worker threads report them)."""
        with self._outcomes_lock:
            self.outcomes[outcome] += 1

    def describe(self) -> str:
        """One line saying what this worker consumes, how, and from where (the start banner)."""
        settings = self.settings
        return (f"topic={self.full_topic} group={self.group_id} brokers={settings.bootstrap_servers} "
                f"registry={'yes' if settings.schema_registry_url else 'none (single-object Avro)'} "
                f"concurrency={self.concurrency} failure_policy={settings.consumer_failure_policy} "
                f"event_types={','.join(sorted(self.event_types)) or 'all'}")

    def _dead_letter(self, message: Any, context: str, error: Exception, attempts: int) -> None:
        topic = dead_letter_topic(self.full_topic, self.group_id, self.settings)
        with self._dead_letter_lock:  # worker threads share one writer
            if self._dead_letters is None:
                self._dead_letters = DeadLetterWriter(self.settings)
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
                ReadableKey(message.key()), timestamp_ms if timestamp_type else "none",
            ))
        except Exception as error:  # noqa: BLE001 -- audit logging must never break the loop
            monitoring.set_attribute("kafka_logging_error", repr(error))

    # -- rebalancing and shutdown --------------------------------------------------------------

    # The callbacks work with both rebalance styles: eager (classic protocol, the whole assignment
    # each time) and incremental (cooperative-sticky, or the KIP-848 consumer protocol: only what
    # changes). They never call assign() themselves, which the two styles spell differently.

    def _on_assign(self, consumer: ConsumerClient, partitions: list) -> None:
        self._assigned.update(p.partition for p in partitions)
        logger.info("Assigned partitions %s; consuming partitions %s",
                    sorted(p.partition for p in partitions), sorted(self._assigned))
        if self._parallel is not None:
            self._parallel.assigned()
        if self._replay is not None and self._replay.pending:
            self._replay.on_first_assignment(consumer)

    def _on_revoke(self, consumer: ConsumerClient, partitions: list) -> None:
        if self._parallel is not None:
            self._parallel.revoked(partitions)
        self._assigned.difference_update(p.partition for p in partitions)
        logger.info("Revoked partitions %s; consuming partitions %s",
                    sorted(p.partition for p in partitions), sorted(self._assigned))

    def _on_lost(self, _consumer: ConsumerClient, partitions: list) -> None:
        lost = [p.partition for p in partitions]
        logger.warning("Lost partitions %s; uncommitted messages will be re-delivered", lost)
        if self._parallel is not None:
            self._parallel.lost(partitions)
        self._assigned.difference_update(lost)

    def _close(self) -> None:
        try:
            if self._parallel is not None:
                self._parallel.commit_final()
        except Exception:
            logger.exception("Could not commit final offsets; the last messages will be re-delivered")
        try:
            self.client.close()  # leaves the group, so partitions move at once
        finally:
            self.heartbeat.clear()
            if self._dead_letters is not None:
                self._dead_letters.close()
            if self.inbox is not None:
                logger.info("Deduplication in group %r: %s", self.group_id, self.inbox.summary())
            if self.event_types:
                logger.info("Skipped %d messages of other event types than %s", self.skipped_other_types,
                            ", ".join(sorted(self.event_types)))
            logger.info("Consumer for full_topic=%r consumer_group=%r closed", self.full_topic, self.group_id)


def _check_event_types(requested: frozenset[str]) -> None:
    """Refuse event types no signal has: a misspelled one would skip, and commit, every event."""
    if not requested:
        return
    from difflib import get_close_matches

    from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals

    load_all_signals()
    known = sorted(signal.event_type for signal in OpenEdxPublicSignal.all_events())
    problems = []
    for event_type in sorted(requested - set(known)):
        close = get_close_matches(event_type, known, n=3, cutoff=0.8)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "; no known type is close"
        problems.append(f"unknown event type {event_type!r} (event_types / --event-type){hint}")
    if problems:
        raise ConfigurationError(problems)


def _option(options: dict[str, Any], name: str, default: Any, parse: Any) -> Any:
    """A consumer option given to the constructor (or ``--extra``), checked like its setting; else the setting."""
    if options.get(name) is None:
        return default
    try:
        return parse(options[name])
    except InvalidSetting as error:
        raise ConfigurationError([f"consumer option {name}={options[name]!r} {error}"]) from None


def _message_context(message: Any, headers: Any) -> str:
    return (
        f"topic={message.topic()} partition={message.partition()} offset={message.offset()} "
        f"event_id={single_header(headers, HEADER_ID)} event_type={single_header(headers, HEADER_EVENT_TYPE)}"
    )


__all__ = ["KNOWN_OPTIONS", "KafkaEventConsumer"]
