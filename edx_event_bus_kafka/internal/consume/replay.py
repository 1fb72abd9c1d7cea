"""A replay asked for on a worker's command line (``--offset-time``, ``--from-beginning``), done once.

The flag moves the whole group back (or forward) on the first assignment. A supervisor restarts
workers with the command line they had, so a flag left there used to replay again on every
restart. Now a replay happens **once per requested time**: the offsets it commits carry a marker
in their commit metadata (a string Kafka keeps with each committed offset), every later commit of
a worker started with the same flag carries it too, and a worker that finds the marker for its own
request on any partition of the topic does not move the group again. Another time is another
request, so it replays once as well.

Why once per time, not "only if the committed offsets are older than the time": the group's
position says nothing about whether a replay happened. A group that has replayed from 09:00 and
caught up sits past 09:00 exactly like one that never replayed, so a position-based rule either
never replays or always does.

The marker lives as long as one partition's last commit came from a worker with the flag (or from
``reset_event_bus_offsets``, which keeps commit metadata). Workers without the flag, and the
reference package, commit without it. Brokers that drop commit metadata (the embedded Tansu) make
every start a first one, as before.
"""
from __future__ import annotations

import logging
from datetime import datetime

from edx_event_bus_kafka.internal.kafka.protocols import ConsumerClient
from edx_event_bus_kafka.internal.kafka.seeking import offsets_at
from edx_event_bus_kafka.internal.runtime.audit import CONSUMER_LOGGER

logger = logging.getLogger(CONSUMER_LOGGER)

#: Start of the commit metadata that records a replay; the requested time (or ``beginning``) follows.
MARKER_PREFIX = "edx_event_bus_kafka replayed-from="

#: Seconds to wait for the broker's answers while the replay is looked up and committed.
TIMEOUT_SEC = 10.0


def replay_marker(when: datetime | None) -> str:
    """The commit metadata of a replay from ``when`` (None: from the beginning)."""
    return MARKER_PREFIX + (when.isoformat() if when is not None else "beginning")


class Replay:
    """The replay of one worker: ``full_topic`` from ``when`` (None: from the beginning), at most once.

    ``marker`` is the commit metadata the worker's commits carry; ``pending`` is true until the
    first assignment has been handled.
    """

    def __init__(self, full_topic: str, when: datetime | None, timeout: float = TIMEOUT_SEC):
        self.full_topic = full_topic
        self.when = when
        self.timeout = timeout
        self.marker = replay_marker(when)
        self.pending = True

    def on_first_assignment(self, consumer: ConsumerClient) -> None:
        """Move the whole group to the replay point, unless an earlier run already did it for this request.

        Called from the rebalance callback, before the assignment takes effect, so fetching starts
        from the offsets committed here.
        """
        from confluent_kafka import TopicPartition

        self.pending = False
        start = self.when.isoformat() if self.when is not None else "the beginning"
        marked = self._marked_partitions(consumer)
        if marked:
            logger.info("Not replaying from %s: the group already did (marker on partition(s) %s); "
                        "reset_event_bus_offsets moves it again", start, marked)
            return
        targets = [TopicPartition(tp.topic, tp.partition, tp.offset, self.marker)
                   for tp in offsets_at(consumer, self.full_topic, self.when, timeout=self.timeout)]
        # The commit moves the whole group, not only the partitions assigned to this worker.
        consumer.commit(offsets=targets, asynchronous=False)
        logger.info("Replaying from %s: offsets %s", start, {t.partition: t.offset for t in targets})

    def _marked_partitions(self, consumer: ConsumerClient) -> list[int]:
        """Partitions of the topic whose committed offset carries this replay's marker."""
        from confluent_kafka import TopicPartition

        metadata = consumer.list_topics(self.full_topic, timeout=self.timeout)
        numbers = sorted(metadata.topics[self.full_topic].partitions)
        committed = consumer.committed([TopicPartition(self.full_topic, n) for n in numbers], timeout=self.timeout)
        return [tp.partition for tp in committed if tp.metadata == self.marker]
