"""What every worker shares: counting errors in a row against the limit."""
from __future__ import annotations

from edx_event_bus_kafka.internal.runtime.worker import ConsecutiveErrors


def test_consecutive_errors__limit_reached_only_by_errors_in_a_row():
    """Two errors, a success, then three errors: the limit of 3 is reached on the last one only."""
    errors = ConsecutiveErrors(3)
    assert [errors.failed(), errors.failed()] == [False, False]
    errors.succeeded()
    assert [errors.failed(), errors.failed(), errors.failed()] == [False, False, True]
    assert errors.count == 3


def test_consecutive_errors__no_limit_never_stops():
    """Without a limit a thousand errors in a row do not stop the worker."""
    errors = ConsecutiveErrors(None)
    assert not any(errors.failed() for _ in range(1000))
    assert errors.count == 1000
