"""Noticing a Kafka producer that can no longer make progress, so its owner can rebuild it.

librdkafka recovers from most trouble by itself: an unreachable broker, a leader moving, a request
timing out. Some states it does not leave: a fatal error, or an idempotent producer whose broker
restarted without its producer state, which then rejects the producer's requests for ever
(``UNKNOWN_PRODUCER_ID``; seen: 0 of 20 events delivered in 70 s, while a new client delivered them
at once). A :class:`StuckClient` watches the passes of work of a long-lived producer (a relay
batch): after several passes in a row that delivered nothing, the owner asks the broker for
metadata with the same client. If the broker answers, it is not an outage: the client is stuck and
only a new one helps. If it does not, it is an outage, which a new client would meet just the same.
"""
from __future__ import annotations

from typing import Any

#: Passes in a row that delivered nothing before the client's broker is probed.
STUCK_AFTER_PASSES = 3


class StuckClient:
    """Counts passes that tried to deliver and delivered nothing; remembers fatal errors."""

    def __init__(self, passes: int = STUCK_AFTER_PASSES):
        self.passes = passes
        self.streak = 0
        self._fatal: Any = None
        #: Which client (its owner's count of replacements) the streak was counted against.
        self.client_generation = 0

    def fatal(self, error: Any) -> None:
        """A fatal client error (from ``error_cb``): the client is stuck at once."""
        self._fatal = error

    def passed(self, attempted: int, delivered: int) -> None:
        """The outcome of one pass: how many deliveries it waited for, and how many succeeded."""
        if delivered or not attempted:
            self.streak = 0
        else:
            self.streak += 1

    def suspect(self) -> bool:
        """Whether to probe the broker: a fatal error, or ``passes`` passes in a row delivered nothing."""
        return self._fatal is not None or self.streak >= self.passes

    def reason(self, broker_answers: bool) -> str | None:
        """Why the client must be replaced (given whether the broker answered a probe), or None."""
        if self._fatal is not None:
            return f"fatal error {self._fatal}"
        if self.streak >= self.passes and broker_answers:
            return f"{self.streak} passes in a row delivered nothing although the broker answers"
        if self.streak >= self.passes:
            self.streak = 0  # an outage: the relay's back-off and the client's own logs report it
        return None

    def reset(self, client_generation: int | None = None) -> None:
        """A new client: start counting again (passes made with the old one say nothing of it)."""
        self.streak, self._fatal = 0, None
        if client_generation is not None:
            self.client_generation = client_generation


def broker_answers(client: Any, timeout: float) -> bool:
    """Whether ``client``'s cluster answers a metadata request within ``timeout`` seconds."""
    try:
        client.list_topics(timeout=timeout)
    except Exception:  # noqa: BLE001 -- any failure means "no answer"
        return False
    return True
