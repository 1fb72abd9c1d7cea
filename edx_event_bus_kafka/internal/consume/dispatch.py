"""Re-emitting a decoded event as its Django signal, and telling whether every receiver succeeded.

``send_event_with_custom_metadata`` marks the event as coming from the bus, so openedx-events does
not publish it again. Receivers' exceptions come back as responses (``send_robust``), or are raised
when ``DEBUG`` is on; both become a :class:`ReceiverError` naming each failing receiver.
"""
from __future__ import annotations

from typing import Any

from openedx_events.data import EventsMetadata
from openedx_events.exceptions import SenderValidationError
from openedx_events.tooling import OpenEdxPublicSignal

from edx_event_bus_kafka.internal.errors import ReceiverError, UnusableMessageError


def _receiver_name(receiver: Any) -> str:
    module = getattr(receiver, "__module__", None)
    name = getattr(receiver, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(receiver)


def emit(signal: OpenEdxPublicSignal, event_data: dict[str, Any], metadata: EventsMetadata) -> int:
    """Send the event to the signal's receivers; returns how many receivers ran.

    Raises:
        ReceiverError: one or more receivers raised (each named in the message).
        UnusableMessageError: the data does not fit the signal (openedx-events validation).

    """
    try:
        responses = signal.send_event_with_custom_metadata(metadata, **event_data)
    except SenderValidationError as error:
        raise UnusableMessageError(f"event data does not fit {signal.event_type}: {error}") from error
    except Exception as error:
        raise ReceiverError(f"a receiver of {signal.event_type} raised {error!r}", [error]) from error
    # send_robust keeps each exception with its traceback (``__traceback__``), logged and dead-lettered.
    failures = [(receiver, response) for receiver, response in responses if isinstance(response, BaseException)]
    if failures:
        described = ", ".join(f"{_receiver_name(receiver)}={error!r}" for receiver, error in failures)
        raise ReceiverError(
            f"{len(failures)} of {len(responses)} receivers of {signal.event_type} failed: {described}",
            [error for _, error in failures],
            [_receiver_name(receiver) for receiver, _ in failures],
        )
    return len(responses)
