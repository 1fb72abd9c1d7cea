"""A real edx-django-utils telemetry backend that keeps what it receives, for assertions.

Configured through ``OPENEDX_TELEMETRY`` in the test settings, it stands where New Relic or Datadog
would be in production (neither can run here).
"""
from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

from edx_django_utils.monitoring import TelemetryBackend

_lock = threading.Lock()
ATTRIBUTES: list[tuple[str, Any]] = []
EXCEPTIONS: list[BaseException] = []


class RecordingBackend(TelemetryBackend):
    """Keeps custom attributes and recorded exceptions in module-level lists."""

    def set_attribute(self, key: str, value: Any) -> None:
        with _lock:
            ATTRIBUTES.append((key, value))

    def record_exception(self) -> None:
        error = sys.exc_info()[1]
        if error is not None:
            with _lock:
                EXCEPTIONS.append(error)

    def create_span(self, name: str, operation_name: str | None = None) -> Any:
        return contextlib.nullcontext()

    def tag_root_span_with_error(self, exception: BaseException) -> None:
        with _lock:
            EXCEPTIONS.append(exception)

    def set_local_root_span_name(self, name: str, group: Any = None, priority: Any = None) -> None:
        return None


def attributes_named(name: str) -> list[Any]:
    """Values set for custom attribute ``name``, oldest first."""
    with _lock:
        return [value for key, value in ATTRIBUTES if key == name]


def clear() -> None:
    """Forget everything recorded."""
    with _lock:
        ATTRIBUTES.clear()
        EXCEPTIONS.clear()
