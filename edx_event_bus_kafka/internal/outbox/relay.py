"""Publishing outbox rows: the ``relay_outbox`` worker loop, and the after-commit flusher.

The relay is a worker like ``consume_events``: same signal handling, same exit codes. Broker,
registry or database outages leave rows pending and back off (doubling up to 60 s); nothing is
dropped, and a database outage is logged when it begins, once a minute while it lasts and when it ends. A broker
that refuses our credentials or TLS setup ends the relay with the configuration status (2). The
flusher is a background thread in each producing process that publishes right after a
transaction with outbox rows commits, so events go out without waiting for the relay's next pass.
"""
from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from edx_event_bus_kafka.internal.consume.work_cycle import prepare_for_new_work_cycle
from edx_event_bus_kafka.internal.outbox.publisher import OutboxPublisher
from edx_event_bus_kafka.internal.runtime.heartbeat import Heartbeat
from edx_event_bus_kafka.internal.runtime.outages import OutageLog
from edx_event_bus_kafka.internal.runtime.worker import EXIT_CONFIG, EXIT_OK, EXIT_TOO_MANY_ERRORS, ConsecutiveErrors
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, get_settings

logger = logging.getLogger(__name__)

MAX_BACKOFF_SEC = 60.0
PURGE_EVERY_SEC = 60.0


class OutboxRelay:
    """Publishes pending outbox rows until stopped."""

    def __init__(self, settings: EventBusSettings | None = None, *, heartbeat_file: str | None = None):
        self.settings = settings or get_settings()
        self._stop = threading.Event()
        self.published = 0
        self.heartbeat = Heartbeat(heartbeat_file, "relay_outbox")

    def stop(self) -> None:
        """Finish the current batch, then return from ``run``."""
        self._stop.set()

    def run(self) -> int:
        """The relay loop; returns an exit status (see ``worker``)."""
        publisher = OutboxPublisher(self.settings)
        backoff = self.settings.outbox_poll_interval_sec
        errors = ConsecutiveErrors(self.settings.worker_consecutive_errors_limit)
        last_purge = 0.0
        database_outage = OutageLog(logger, f"Outbox relay: database {self.settings.transaction_database!r}")
        logger.info("Outbox relay running (database %r)", self.settings.transaction_database)
        try:
            while not self._stop.is_set():
                prepare_for_new_work_cycle()
                try:
                    result = publisher.publish_batch()
                    if time.monotonic() - last_purge > PURGE_EVERY_SEC:
                        last_purge = time.monotonic()
                        purged = publisher.purge()
                        if purged:
                            logger.info("Purged %d published outbox rows", purged)
                    database_outage.recovered()
                except (OperationalError, InterfaceError) as error:  # the server is away: one story, no traceback
                    database_outage.failed(error, backoff)
                    result = None
                except DatabaseError:
                    logger.exception("Outbox relay database error; backing off %.1f s", backoff)
                    result = None
                if result is not None:
                    self.published += result.published
                if publisher.refusals.reason is not None:
                    return EXIT_CONFIG  # logged by the watch; only new settings can help
                if result is None or result.left_pending:
                    if result is not None:
                        logger.warning("Outbox relay: %d rows left pending (%s); backing off %.1f s",
                                       result.left_pending, "; ".join(result.errors[:3]), backoff)
                    if errors.failed():
                        logger.error("Too many consecutive errors, exiting (%d in a row)", errors.count)
                        return EXIT_TOO_MANY_ERRORS
                    self._stop.wait(backoff)
                    backoff = min(MAX_BACKOFF_SEC, backoff * 2)
                    continue
                errors.succeeded()
                backoff = self.settings.outbox_poll_interval_sec
                self.heartbeat.beat()
                if result.published + result.failed_permanently < self.settings.outbox_batch_size:
                    self._stop.wait(self.settings.outbox_poll_interval_sec)  # caught up: idle
            return EXIT_OK
        finally:
            self.heartbeat.clear()
            publisher.close()
            logger.info("Outbox relay stopped after publishing %d rows", self.published)


class OutboxFlusher:
    """A background thread that publishes pending rows whenever ``notify`` is called (after commit)."""

    def __init__(self, settings: EventBusSettings):
        self.settings = settings
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._publisher: OutboxPublisher | None = None
        self._thread = threading.Thread(target=self._run, name="outbox-flusher", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Rows were committed: publish soon."""
        self._wake.set()

    def close(self) -> None:
        """Stop the thread after its current pass."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed.is_set():
                break
            try:
                self._publisher = self._publisher or OutboxPublisher(self.settings)
                while not self._closed.is_set():
                    result = self._publisher.publish_batch()
                    if self._publisher.refusals.reason is not None:
                        break  # logged by the watch (sparingly); the rows stay pending
                    if result.left_pending or result.published + result.failed_permanently == 0:
                        break  # nothing more, or the broker is unhappy: the relay will retry
            except Exception:
                logger.exception("Publishing outbox rows after commit failed; the relay will publish them")
            finally:
                connections.close_all()  # this thread's connections only
        if self._publisher is not None:
            self._publisher.close()
