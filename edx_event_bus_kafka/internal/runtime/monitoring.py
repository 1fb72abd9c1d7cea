"""Monitoring through edx-django-utils (New Relic, Datadog, OpenTelemetry backends).

Monitoring is a side concern: every helper here catches and records its own failures, so it can
never break producing or the consume loop.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any

from edx_django_utils.monitoring import record_exception as _record_exception
from edx_django_utils.monitoring import set_custom_attribute as _set_custom_attribute

logger = logging.getLogger(__name__)

#: Whether the New Relic agent is installed (edx-django-utils' default backend needs it).
_NEW_RELIC_INSTALLED = importlib.util.find_spec("newrelic") is not None


def _nothing_to_report_to() -> bool:
    """``OPENEDX_TELEMETRY`` unset (so New Relic, by edx-django-utils' default) and New Relic not installed.

    Then no backend could receive anything, and asking edx-django-utils would only log its
    "Could not load OPENEDX_TELEMETRY option ... NewRelicBackend" warning in every command.
    """
    from django.conf import settings

    return not _NEW_RELIC_INSTALLED and getattr(settings, "OPENEDX_TELEMETRY", None) is None


def set_attribute(name: str, value: Any) -> None:
    """Set a custom attribute on the current trace; never raises."""
    if _nothing_to_report_to():
        return
    try:
        _set_custom_attribute(name, value)
    except Exception:
        logger.debug("could not set monitoring attribute %s", name, exc_info=True)


def record_exception() -> None:
    """Record the exception being handled (call inside ``except``); never raises."""
    if _nothing_to_report_to():
        return
    try:
        _record_exception()
    except Exception:
        logger.debug("could not record exception in monitoring", exc_info=True)


def record_error(error: BaseException) -> None:
    """Record ``error`` in monitoring even outside an ``except`` block."""
    try:
        raise error
    except BaseException:  # noqa: BLE001 -- re-raised only to give the backend a current exception
        record_exception()


try:  # an internal API of edx-django-utils: if it moves, assume monitoring is on
    from edx_django_utils.monitoring.internal.backends import configured_backends
except ImportError:  # pragma: no cover
    configured_backends = None


def _monitoring_configured() -> bool:
    """Whether any edx-django-utils telemetry backend is configured (cached by edx-django-utils)."""
    if _nothing_to_report_to():
        return False
    return configured_backends is None or bool(configured_backends())


def set_message_attributes(full_topic: str, message: Any, headers: Any = None,
                           error: BaseException | None = None) -> None:
    """The reference's custom attributes for a consumed message (and its error); never raises."""
    if not _monitoring_configured():
        return  # nothing would receive them: skip the per-message work
    try:
        from edx_event_bus_kafka.internal.wire.headers import HEADER_EVENT_TYPE, HEADER_ID, header_values

        set_attribute("kafka_topic", full_topic)
        set_attribute("kafka_received_message", message is not None)
        if message is None:
            return
        set_attribute("kafka_partition", message.partition())
        set_attribute("kafka_offset", message.offset())
        headers = (message.headers() if headers is None else headers) or []
        message_ids = header_values(headers, HEADER_ID)
        if message_ids:
            set_attribute("kafka_message_id", ",".join(message_ids))
        event_types = header_values(headers, HEADER_EVENT_TYPE)
        if event_types:
            set_attribute("kafka_event_type", ",".join(event_types))
        if error is not None:
            set_attribute("kafka_error_class", type(error).__name__)
    except Exception as monitoring_error:  # noqa: BLE001 -- see module docstring
        set_attribute("kafka_monitoring_error", repr(monitoring_error))
