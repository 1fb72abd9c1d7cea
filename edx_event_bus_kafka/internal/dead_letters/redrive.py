"""Redrive: re-publish chosen dead letters to their original topic, for the group that parked them.

A re-published copy carries the ``REDRIVE_GROUP`` header: only the group that dead-lettered it
processes it again, while other groups, which already handled the original, skip it.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from edx_event_bus_kafka.internal.dead_letters import writer as dead_letter
from edx_event_bus_kafka.internal.dead_letters.letters import DeadLetter
from edx_event_bus_kafka.internal.errors import RedriveError, RepublishError
from edx_event_bus_kafka.internal.kafka.clients import Outgoing, new_producer, produce_and_wait
from edx_event_bus_kafka.internal.settings.clients import producer_client_config
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings, get_settings

logger = logging.getLogger(__name__)

DELIVERY_TIMEOUT_SEC = 30.0


def redrive(dead_letters: Sequence[DeadLetter], group_id: str, *, dry_run: bool = False,
            settings: EventBusSettings | None = None, timeout: float = DELIVERY_TIMEOUT_SEC) -> int:
    """Re-publish each dead letter to its original topic for ``group_id`` only; returns how many.

    Copies keep the original key, value and headers. Returns only once the broker acknowledged every
    copy, so the count is of delivered copies. ``dry_run`` checks the dead letters and sends nothing.

    Raises:
        RedriveError: a dead letter has no original topic (nothing is sent then).
        RepublishError: some copies were not acknowledged; the others were delivered.

    """
    unknown = [letter for letter in dead_letters if not letter.original_topic]
    if unknown:
        named = ", ".join(f"{letter.partition}:{letter.offset}" for letter in unknown)
        raise RedriveError(f"dead letter(s) at {named} do not name their original topic; nothing re-published")
    if dry_run or not dead_letters:
        return len(dead_letters)
    config = producer_client_config(settings or get_settings())
    # Whatever the pass-through options say: no copy lost, none doubled by the producer's own retries.
    config.update({"enable.idempotence": True, "acks": "all"})
    copies = [
        Outgoing(str(letter.original_topic), letter.key, letter.value,
                 [*letter.headers, (dead_letter.REDRIVE_GROUP, group_id.encode("utf-8"))])
        for letter in dead_letters
    ]
    outcomes = produce_and_wait(new_producer(config), copies, timeout)
    failures = [(letter, outcome.reason) for letter, outcome in zip(dead_letters, outcomes, strict=True)
                if not outcome.delivered]
    for letter, outcome in zip(dead_letters, outcomes, strict=True):
        if outcome.delivered:
            logger.info("Re-published dead letter %d:%d event_id=%s to %s for group %s", letter.partition,
                        letter.offset, letter.event_id, letter.original_topic, group_id)
    delivered = len(dead_letters) - len(failures)
    if failures:
        described = "; ".join(f"event {letter.event_id} (dead letter {letter.partition}:{letter.offset}): {reason}"
                              for letter, reason in failures)
        raise RepublishError(f"{len(failures)} of {len(dead_letters)} dead letters were not re-published "
                             f"({delivered} were): {described}", failures, delivered)
    return delivered
