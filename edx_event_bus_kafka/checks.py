"""Django system checks for the event bus settings.

Invalid settings fail ``manage.py check``, ``migrate`` and every management command at start-up,
with one error per bad setting.
"""
from __future__ import annotations

from typing import Any

from django.core import checks

from edx_event_bus_kafka.internal.settings.declarations import settings_problems


@checks.register()
def check_event_bus_settings(app_configs: Any = None, **_kwargs: Any) -> list[checks.CheckMessage]:
    """One error per invalid ``EVENT_BUS_*`` setting."""
    return [
        checks.Error(
            problem,
            hint="See the settings reference: docs/reference/settings.rst",
            id="edx_event_bus_kafka.E001",
        )
        for problem in settings_problems()
    ]
