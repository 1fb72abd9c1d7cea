"""What to do about a failed message: a pure decision, executed by the consume loop.

* **Unusable** messages (bad headers, unknown type, undecodable value) will never work: dead-letter
  them at once.
* **Receiver errors** may be transient (a database blip): retry with exponential backoff, then
  dead-letter.
* **Infrastructure errors** (registry unreachable, dead-letter topic not writable, and receivers
  failing because the database is unavailable: Django's ``OperationalError`` or ``InterfaceError``,
  as on a dropped connection or a database restart) are not the message's fault: retry with backoff
  without limit, never skip; the consecutive-errors limit eventually restarts the worker.

With the reference's ``log_and_skip`` policy, "dead-letter" becomes "log and move on".
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from edx_event_bus_kafka.internal.errors import ReceiverError, UnusableMessageError
from edx_event_bus_kafka.internal.settings.declarations import EventBusSettings


class Action(enum.Enum):
    """What the loop does next with the message."""

    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    """An action, the delay before it, and a short reason for the logs."""

    action: Action
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class ErrorPolicy:
    """Turns (error, attempts so far) into a :class:`Decision`. Holds no state."""

    max_attempts: int
    backoff: float
    backoff_max: float
    dead_letter: bool

    @classmethod
    def from_settings(cls, settings: EventBusSettings) -> ErrorPolicy:
        """The policy configured by the ``EVENT_BUS_KAFKA_CONSUMER_*`` settings."""
        return cls(
            max_attempts=settings.consumer_retry_attempts,
            backoff=settings.consumer_retry_backoff_sec,
            backoff_max=settings.consumer_retry_backoff_max_sec,
            dead_letter=settings.consumer_failure_policy == "dead_letter",
        )

    def delay_after(self, attempts: int) -> float:
        """Backoff before attempt ``attempts + 1``: doubling from ``backoff``, capped."""
        return float(min(self.backoff_max, self.backoff * (2 ** max(0, attempts - 1))))

    def decide(self, error: BaseException, attempts: int) -> Decision:
        """Decide after ``attempts`` failed attempts at processing one message."""
        give_up = Action.DEAD_LETTER if self.dead_letter else Action.SKIP
        if isinstance(error, UnusableMessageError):
            return Decision(give_up, reason="unusable message")
        if isinstance(error, ReceiverError):
            if any(database_unavailable(cause) for cause in error.causes):
                return Decision(Action.RETRY, self.delay_after(attempts), "database unavailable")
            if attempts < self.max_attempts:
                return Decision(Action.RETRY, self.delay_after(attempts), "receiver error")
            return Decision(give_up, reason=f"receiver error after {attempts} attempts")
        return Decision(Action.RETRY, self.delay_after(attempts), "infrastructure error")


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the database cannot be used right now.

    Django turns the driver's connection failures into ``OperationalError`` / ``InterfaceError``
    (a dropped connection, a server restarting, "database is locked"); a receiver that lets one
    escape failed because of the database, not because of the event.
    """
    from django.db import InterfaceError, OperationalError

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (OperationalError, InterfaceError)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
