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
    """One error per invalid ``EVENT_BUS_*`` setting; a warning when we are the bus but have no broker."""
    found: list[checks.CheckMessage] = [
        checks.Error(
            problem,
            hint="See the settings reference: docs/reference/settings.rst",
            id="edx_event_bus_kafka.E001",
        )
        for problem in settings_problems()
    ]
    if not found:
        found.extend(_missing_broker())
    return found


def _missing_broker() -> list[checks.CheckMessage]:
    """We are the configured producer or consumer, yet no broker is set: nothing would be sent or consumed.

    A warning, not an error: image builds run ``migrate`` and ``collectstatic`` without the
    deployment's broker settings, and must not fail for it. The workers refuse to start (status 2).
    """
    from django.conf import settings as django_settings

    from edx_event_bus_kafka.internal.settings.declarations import get_settings

    ours = [name for name in ("EVENT_BUS_PRODUCER", "EVENT_BUS_CONSUMER")
            if str(getattr(django_settings, name, "") or "").startswith("edx_event_bus_kafka")]
    if not ours or get_settings().bootstrap_servers:
        return []
    return [checks.Warning(
        f"EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set, but {' and '.join(ours)} name this package: events "
        "will not be sent, and consume_events and relay_outbox will refuse to start",
        hint="Set EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS to the brokers' host:port list",
        id="edx_event_bus_kafka.W001",
    )]
