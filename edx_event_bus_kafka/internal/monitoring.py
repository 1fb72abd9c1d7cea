"""Monitoring through edx-django-utils (New Relic, Datadog, OpenTelemetry backends).

Monitoring is a side concern: every helper here catches and records its own failures, so it can
never break producing or the consume loop.
"""
from __future__ import annotations

import logging
from typing import Any

from edx_django_utils.monitoring import record_exception as _record_exception
from edx_django_utils.monitoring import set_custom_attribute as _set_custom_attribute

logger = logging.getLogger(__name__)


def set_attribute(name: str, value: Any) -> None:
    """Set a custom attribute on the current trace; never raises."""
    try:
        _set_custom_attribute(name, value)
    except Exception:
        logger.debug("could not set monitoring attribute %s", name, exc_info=True)


def record_exception() -> None:
    """Record the exception being handled (call inside ``except``); never raises."""
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
