"""The consumer's side of the inbox: emit a decoded event once per group, or skip it as a duplicate.

``KafkaEventConsumer`` builds one :class:`Deduplicator` for its group when
``EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION`` covers the group, and then calls :meth:`~Deduplicator.emit`
instead of ``dispatch.emit`` for each decoded event, and :meth:`~Deduplicator.between_batches`
after each batch. An event of a type the setting does not cover goes to its receivers as before.

A duplicate is skipped, counted, logged at INFO with where it came from, and its offset is marked
done by the loop like any processed message. Receiver errors come out of :meth:`~Deduplicator.emit`
exactly as from ``dispatch.emit`` (after the rollback), so retries and dead letters work as without
deduplication. :meth:`~Deduplicator.emit` may be called from several threads at once (each uses its
own database connection); :meth:`~Deduplicator.between_batches` from one.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import DatabaseError, connections
from openedx_events.data import EventsMetadata
from openedx_events.tooling import OpenEdxPublicSignal

from edx_event_bus_kafka.internal.consume.dispatch import emit
from edx_event_bus_kafka.internal.errors import ConfigurationError
from edx_event_bus_kafka.internal.inbox import store
from edx_event_bus_kafka.internal.inbox.purging import InboxPurger
from edx_event_bus_kafka.internal.runtime import monitoring
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings

logger = logging.getLogger(__name__)


class Deduplicator:
    """Runs the receivers of each event once for ``group``; counts what it processed and skipped."""

    def __init__(self, group: str, settings: EventBusSettings):
        self.group = group
        self.database = settings.transaction_database
        self.scope = settings.consumer_deduplication
        self.purger = InboxPurger(settings)
        self.processed = 0
        self.duplicates = 0
        self._count_lock = threading.Lock()

    @classmethod
    def for_group(cls, group: str, settings: EventBusSettings) -> Deduplicator | None:
        """The deduplicator of ``group``, or None when the setting does not cover the group.

        Raises:
            ConfigurationError: the inbox table does not exist in the database (the migration was not run).

        """
        if not settings.consumer_deduplication.enabled_for(group):
            return None
        _check_table(settings.transaction_database)
        deduplicator = cls(group, settings)
        logger.info("Consumer group %r deduplicates events (%s) in database %r; inbox retention %.0f s, purged %s",
                    group, deduplicator.scope.describe(group), deduplicator.database, settings.inbox_retention_sec,
                    f"every {deduplicator.purger.interval:.0f} s by the worker" if deduplicator.purger.enabled
                    else "only by purge_event_bus_inbox")
        return deduplicator

    def emit(self, message: Any, signal: OpenEdxPublicSignal, event_data: dict[str, Any],
             metadata: EventsMetadata) -> bool:
        """Emit the event unless ``group`` processed it before; False when it was skipped as a duplicate.

        Raises:
            ReceiverError, UnusableMessageError: as ``dispatch.emit``, after rolling back.
            DatabaseError: the inbox could not be read or written (an infrastructure error: retried).

        """
        if not self.scope.covers(self.group, signal.event_type):
            emit(signal, event_data, metadata)
            return True
        delivery = store.Delivery(group=self.group, event_id=str(metadata.id), topic=message.topic(),
                                  partition=message.partition(), offset=message.offset())
        if store.run_once(delivery, lambda: emit(signal, event_data, metadata), using=self.database):
            with self._count_lock:
                self.processed += 1
            return True
        with self._count_lock:
            self.duplicates += 1
        monitoring.set_attribute("kafka_duplicate_skipped", True)
        logger.info("Skipping duplicate event already processed by consumer group %r: topic=%s partition=%s "
                    "offset=%s event_id=%s event_type=%s", self.group, delivery.topic, delivery.partition,
                    delivery.offset, delivery.event_id, signal.event_type)
        return False

    def between_batches(self) -> None:
        """Purge a batch of expired inbox rows if one is due (see ``purging``)."""
        self.purger.between_batches()

    def summary(self) -> str:
        """What this deduplicator did, for the worker's closing log line."""
        return (f"processed {self.processed}, skipped {self.duplicates} duplicates, purged {self.purger.purged} "
                f"expired inbox rows in {self.purger.seconds:.3f} s")


def _check_table(database: str) -> None:
    """Fail at start when the inbox table is missing; a database that is down now is the loop's problem."""
    from edx_event_bus_kafka.models import InboxEvent

    table = InboxEvent._meta.db_table
    try:
        with connections[database].cursor() as cursor:
            tables = connections[database].introspection.table_names(cursor)
    except DatabaseError as error:
        logger.warning("Could not check for the inbox table in database %r (deduplication will retry "
                       "each event until the database answers): %s", database, error)
        return
    if table not in tables:
        raise ConfigurationError([
            f"EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION is on but database {database!r} has no inbox table "
            f"({table}); run ./manage.py migrate edx_event_bus_kafka"
        ])
