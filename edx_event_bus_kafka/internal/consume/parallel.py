"""The consumer's loop: one poll thread, N worker threads, per-key (or partition) order, frontier commits.

The poll loop (the main thread) only fetches, hands messages to
:class:`~edx_event_bus_kafka.internal.consume.lanes.Lanes`, and commits; N worker threads
(``EVENT_BUS_KAFKA_CONSUMER_CONCURRENCY``, 1 by default, then in partition order) decode and emit.
Guarantees:

* **Order**: messages of one lane (same key within a partition, by default) are processed one at a
  time, in offset order; a message under retry holds back only its own lane.
* **At least once**: per partition only the done frontier is committed (see ``frontier``), so a
  crash re-delivers every message that was not done, and nothing after it is lost.
* **Bounded redelivery**: the frontier is committed once ``EVENT_BUS_KAFKA_CONSUMER_COMMIT_EVERY_MESSAGES``
  messages are done or ``EVENT_BUS_KAFKA_CONSUMER_COMMIT_INTERVAL_SEC`` after one was, whichever comes
  first, so a kill -9 re-delivers at most about that many finished messages.
* **Bounded memory**: at ``EVENT_BUS_KAFKA_CONSUMER_MAX_IN_FLIGHT`` messages held, fetching pauses;
  it resumes at half of that.
* **The poll loop never waits on receivers**: heartbeats and rebalance callbacks are served while
  threads work, and retries wait in their lane, not in the loop.
* **Rebalances**: a revoked partition's queued messages are dropped, its running ones get up to the
  shutdown timeout to finish, its frontier is committed, and nothing of it is committed afterwards.
  A fetch can return messages taken before a rebalance it served (librdkafka runs the callbacks
  inside ``consume``/``poll``): those of a partition revoked meanwhile are left out, and if the
  partition came back it is read again from its committed offset, as its new owner would.
* **Shutdown**: fetching stops, running messages finish (within the shutdown timeout, which the
  signal handler enforces), the frontier is committed.

Each thread has its own database connection (Django's are per thread), closed when it ends, and
a clean Django state per message, as in the sequential loop.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from edx_event_bus_kafka.internal.consume.frontier import DoneFrontier, TopicPartition
from edx_event_bus_kafka.internal.consume.lanes import Lanes, Work
from edx_event_bus_kafka.internal.consume.work_cycle import prepare_for_new_work_cycle
from edx_event_bus_kafka.internal.kafka.commits import positions
from edx_event_bus_kafka.internal.runtime import monitoring
from edx_event_bus_kafka.internal.runtime.worker import EXIT_CONFIG, EXIT_FATAL, EXIT_OK, EXIT_TOO_MANY_ERRORS
from edx_event_bus_kafka.internal.settings.clients import OFFSET_RESET_FROM_BEGINNING
from edx_event_bus_kafka.internal.wire.decode import decode_message

if TYPE_CHECKING:
    from edx_event_bus_kafka.internal.consume.consumer import KafkaEventConsumer

logger = logging.getLogger(__name__)

#: How long a worker thread waits for a message before it checks whether to stop.
TAKE_TIMEOUT_SEC = 0.25

#: How long to wait for a partition's committed offset when it must be read again after a rebalance.
COMMITTED_TIMEOUT_SEC = 10.0


class ParallelLoop:
    """The poll loop and worker threads of one consumer with concurrency above 1."""

    def __init__(self, owner: KafkaEventConsumer, concurrency: int, ordering: str, max_in_flight: int):
        self.owner = owner
        self.concurrency = concurrency
        self.max_in_flight = max_in_flight
        self.lanes = Lanes(ordering)
        self.frontier = DoneFrontier()
        self.too_many_errors = False
        self._paused = False
        self._finished = 0  # messages done so far (heartbeat: the loop is making progress)
        self._finished_lock = threading.Lock()
        self._finished_at_commit = 0  # ``_finished`` when the frontier was last committed
        self._last_commit = time.monotonic()
        self._threads: list[threading.Thread] = []
        self._moved_during_fetch: set[TopicPartition] | None = None  # revoked or lost while fetching

    # -- the poll loop (main thread) -------------------------------------------------------------

    def run(self) -> int:
        """Start the threads, poll until stopped, then let running messages finish; returns an exit status."""
        owner = self.owner
        logger.info("Consuming with %d threads, ordering by %s, at most %d messages in flight",
                    self.concurrency, self.lanes.ordering, self.max_in_flight)
        for number in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"event-bus-worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        try:
            return self._poll()
        finally:
            self._pause_all()  # stop fetching; running messages finish, queued ones are not started
            self.lanes.close()
            if not self.lanes.wait_until_nothing_taken(owner.settings.worker_shutdown_timeout_sec):
                logger.warning("Messages still running after %.0f s; they are not committed",
                               owner.settings.worker_shutdown_timeout_sec)
            for thread in self._threads:
                thread.join(timeout=1)

    def _poll(self) -> int:
        from edx_event_bus_kafka.internal.consume.consumer import _TooManyErrors

        try:
            return self._poll_until_stopped()
        except _TooManyErrors:  # poll errors count too
            self.too_many_errors = True
            logger.error("Too many consecutive errors, exiting (%d in a row)", self.owner._errors.count)
            return EXIT_TOO_MANY_ERRORS

    def _poll_until_stopped(self) -> int:
        owner = self.owner
        last_beat = -1
        while not owner._stop.is_set():
            if owner._refusals.reason is not None:
                return EXIT_CONFIG
            if owner._fatal_error is not None:
                logger.error("Fatal Kafka consumer error, exiting: %s", owner._fatal_error)
                return EXIT_FATAL
            if self.too_many_errors:
                break
            for message in self._fetch():
                self._take_in(message)
            self._apply_backpressure()
            if self._commit_due():
                self._commit_frontier()
            if owner.inbox is not None:
                owner.inbox.between_batches()  # purge expired inbox rows when due, in this thread
            finished = self._finished
            if finished != last_beat or self.lanes.waiting == 0:  # progress, or nothing to make progress on
                owner.heartbeat.beat()
                last_beat = finished
        if owner._refusals.reason is not None:
            return EXIT_CONFIG
        if self.too_many_errors:
            logger.error("Too many consecutive errors, exiting (%d in a row)", owner._errors.count)
            return EXIT_TOO_MANY_ERRORS
        return EXIT_FATAL if owner._fatal_error is not None else EXIT_OK

    def _fetch(self) -> list[Any]:
        """The next batch, less the messages of partitions revoked or lost while it was fetched."""
        settings = self.owner.settings
        self._moved_during_fetch = set()
        try:
            batch = self.owner._next_batch(settings.consumer_batch_size, settings.consumer_poll_timeout,
                                           wake=self._commit_due)
            moved = self._moved_during_fetch
        finally:
            self._moved_during_fetch = None
        return self._leave_out(batch, moved) if moved else batch

    def _leave_out(self, batch: list[Any], moved: set[TopicPartition]) -> list[Any]:
        """Drop ``moved`` partitions' messages (they may predate the rebalance); re-read those assigned again.

        Taken in, a message of the old assignment would count as the first of the new one: processed
        twice (the new assignment re-fetches it from the committed offset) and, done first, it would
        let the commit jump over the messages before it.
        """
        kept, dropped, emptied = [], 0, set()
        for message in batch:
            partition = (message.topic(), message.partition())
            if message.error() is None and partition in moved:
                dropped += 1
                emptied.add(partition)
            else:
                kept.append(message)
        if dropped:
            again = sorted(emptied & {(tp.topic, tp.partition) for tp in self.owner.client.assignment()})
            logger.info("Left out %d messages of partitions %s fetched before a rebalance; reading %s again from "
                        "the committed offsets", dropped, sorted(p for _, p in emptied), [p for _, p in again])
            if again:
                self._read_again_from_committed(again)
        return kept

    def _read_again_from_committed(self, partitions: list[TopicPartition]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, KafkaException
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        client = self.owner.client
        from_start = str(self.owner.client_config.get("auto.offset.reset", "latest")).lower() \
            in OFFSET_RESET_FROM_BEGINNING
        try:
            committed = client.committed([KafkaTopicPartition(topic, number) for topic, number in partitions],
                                         timeout=COMMITTED_TIMEOUT_SEC)
        except KafkaException as error:
            # Going on would skip what was left out; a restarted worker reads it from the committed offset.
            logger.error("Could not read the committed offsets of partitions %s to read them again (%s); stopping",
                         [number for _, number in partitions], error)
            self.owner._fatal_error = error.args[0] if error.args else error
            self.owner._stop.set()
            return
        for position in committed:
            if position.offset < 0 and not from_start:
                continue  # no commit, starting at the end: where the new assignment starts is right
            offset = position.offset if position.offset >= 0 else OFFSET_BEGINNING
            try:
                client.seek(KafkaTopicPartition(position.topic, position.partition, offset))
            except KafkaException:
                pass  # not fetching yet: it starts from the committed offset by itself

    def _take_in(self, message: Any) -> None:
        owner = self.owner
        if message.error() is not None:
            owner._poll_error(message.error())
            return
        headers = message.headers() or []
        owner._audit_received(message, headers)
        partition: TopicPartition = (message.topic(), message.partition())
        generation = self.frontier.received(partition, message.offset())
        if owner._skipped(message, headers):
            self.frontier.done(partition, message.offset(), generation)
            return
        self.lanes.add(Work(message=message, headers=headers, partition=partition, offset=message.offset(),
                            generation=generation))

    def _apply_backpressure(self) -> None:
        waiting = self.lanes.waiting
        if not self._paused and waiting >= self.max_in_flight:
            self._pause_all()
            logger.debug("Paused fetching: %d messages in flight", waiting)
        elif self._paused and waiting <= self.max_in_flight // 2:
            consumer = self.owner.client
            assignment = consumer.assignment()
            if assignment:
                consumer.resume(assignment)
                # librdkafka does not wake a partition's broker thread on resume: fetching would
                # restart only at that thread's next idle wake-up, ~0.9 s later (measured on Tansu
                # and Apache Kafka with librdkafka 2.16). A seek to the position fetching resumes
                # from anyway wakes it at once.
                for position in consumer.position(assignment):
                    if position.offset >= 0:
                        consumer.seek(position)
            self._paused = False
            logger.debug("Resumed fetching: %d messages in flight", waiting)

    def _pause_all(self) -> None:
        consumer = self.owner.consumer
        if consumer is None:
            return
        assignment = consumer.assignment()
        if assignment:
            consumer.pause(assignment)
        self._paused = True

    def _commit_due(self) -> bool:
        """Enough messages done since the last commit, or one done long enough ago."""
        done_since = self._finished - self._finished_at_commit
        if done_since <= 0:
            return self.frontier.has_changes()  # skipped messages move the frontier too
        settings = self.owner.settings
        return (done_since >= settings.consumer_commit_every_messages
                or time.monotonic() - self._last_commit >= settings.consumer_commit_interval_sec)

    def _commit_frontier(self, *, wait: bool = False, partitions: set[TopicPartition] | None = None) -> None:
        if partitions is None:
            self._finished_at_commit = self._finished
            self._last_commit = time.monotonic()
        found = self.frontier.commits(only_changed=not wait)
        if partitions is not None:
            found = {tp: offset for tp, offset in found.items() if tp in partitions}
        if found:
            offsets = positions(found, self.owner.commit_metadata)
            if wait:
                self.owner.client.commit(offsets=offsets, asynchronous=False)
            else:
                self.owner.client.commit(offsets=offsets, asynchronous=True)

    # -- rebalances and the end (called by the consumer, in the poll thread) ---------------------

    def assigned(self) -> None:
        """New partitions: fetch them unless fetching is paused for backpressure."""
        if self._paused:
            self._pause_all()

    def revoked(self, partitions: list[Any]) -> None:
        """Stop starting the partitions' messages, let running ones finish (bounded), commit, forget them."""
        revoked = {(p.topic, p.partition) for p in partitions}
        if self._moved_during_fetch is not None:
            self._moved_during_fetch.update(revoked)
        running = self.lanes.drop_partitions(revoked)
        timeout = self.owner.settings.worker_shutdown_timeout_sec
        if running and not self.lanes.wait_until_idle(running, timeout):
            logger.warning("%d messages of revoked partitions still running after %.0f s; the group's next owner "
                           "will process them again", sum(1 for work in running if work.taken), timeout)
        try:
            self._commit_frontier(wait=True, partitions=revoked)
        except Exception:
            logger.exception("Could not commit offsets of revoked partitions; their messages will be re-delivered")
        self.frontier.forget(list(revoked))

    def lost(self, partitions: list[Any]) -> None:
        """Partitions taken away without a revocation: drop and forget them, commit nothing."""
        lost = {(p.topic, p.partition) for p in partitions}
        if self._moved_during_fetch is not None:
            self._moved_during_fetch.update(lost)
        self.lanes.drop_partitions(lost)
        self.frontier.forget(list(lost))

    def commit_final(self) -> None:
        """At shutdown: commit every partition's frontier and wait for the broker."""
        self._commit_frontier(wait=True)

    # -- worker threads --------------------------------------------------------------------------

    def _work(self) -> None:
        from django.db import connections

        try:
            while True:
                # Once stopping, start no queued message (shutdown finishes only the running ones): the
                # poll thread closes the lanes only when it next wakes, up to STOP_CHECK_SEC later.
                if self.owner._stop.is_set():
                    return
                work = self.lanes.take(TAKE_TIMEOUT_SEC)
                if work is None:
                    if self.owner._stop.is_set() or self.too_many_errors:
                        return
                    continue
                self._process(work)
        except Exception:  # a bug here must not leave the loop believing the thread still works
            logger.exception("Event bus worker thread failed; stopping the consumer")
            self.owner._stop.set()
        finally:
            connections.close_all()  # this thread's connections only

    def _process(self, work: Work) -> None:
        from edx_event_bus_kafka.internal.consume.consumer import _TooManyErrors

        owner = self.owner
        monitoring.set_message_attributes(owner.full_topic, work.message, work.headers)
        try:
            prepare_for_new_work_cycle()
            owner.deliver(work.message, *decode_message(work.message, work.headers))
        except Exception as error:  # noqa: BLE001 -- every failure goes through the error policy
            work.attempts += 1
            try:
                delay = owner.settle_failure(work.message, work.headers, error, work.attempts)
            except _TooManyErrors:
                self.too_many_errors = True
                owner._stop.set()
                self.lanes.retry_later(work, 3600.0)  # not done: never committed, re-delivered after restart
                return
            if delay is not None:
                self.lanes.retry_later(work, delay)
                return
        else:
            owner._errors.succeeded()
            owner.count("processed")
        self.frontier.done(work.partition, work.offset, work.generation)
        self.lanes.finished(work)
        with self._finished_lock:
            self._finished += 1
