"""A receiver failing because the database is unavailable is an infrastructure failure, not a bad event."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, InterfaceError, OperationalError

from edx_event_bus_kafka.internal.consume.error_policy import Action, ErrorPolicy, database_unavailable
from edx_event_bus_kafka.internal.errors import ReceiverError

POLICY = ErrorPolicy(max_attempts=3, backoff=0.5, backoff_max=4.0, dead_letter=True)


def failing(*causes: BaseException) -> ReceiverError:
    return ReceiverError("receivers failed", list(causes))


def wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised while handling ``inner`` (``raise outer from inner``)."""
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize("cause", [
    OperationalError("server closed the connection unexpectedly"),
    InterfaceError("connection already closed"),
    wrapped(RuntimeError("could not save the grade"), OperationalError("terminating connection")),
])
def test_database_connection_failures_are_retried_without_limit(cause):
    """Long after the retry attempts are used up, such a failure is still retried, never dead-lettered."""
    decision = POLICY.decide(failing(cause), attempts=50)
    assert decision.action is Action.RETRY and decision.reason == "database unavailable"
    assert decision.delay == 4.0  # the backoff still grows to its cap


@pytest.mark.parametrize("cause", [ValueError("bad grade"), IntegrityError("duplicate key")])
def test_other_receiver_failures_are_dead_lettered_after_the_attempts(cause):
    """A receiver's own bug, or a constraint the event violates, is dead-lettered as before."""
    assert POLICY.decide(failing(cause), attempts=2).action is Action.RETRY
    assert POLICY.decide(failing(cause), attempts=3).action is Action.DEAD_LETTER


def test_one_database_failure_among_several_receivers_is_enough():
    """When one receiver hit the database outage and another raised something else, it is retried."""
    decision = POLICY.decide(failing(ValueError("other"), OperationalError("gone")), attempts=10)
    assert decision.action is Action.RETRY


def test_a_cycle_of_causes_ends():
    """Exceptions that refer to each other (a context loop) do not hang the check."""
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__context__, second.__context__ = second, first
    assert database_unavailable(first) is False
