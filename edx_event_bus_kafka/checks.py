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
            hint="See the settings reference in the edx-event-bus-kafka documentation (Reference > Settings)",
            id="edx_event_bus_kafka.E001",
        )
        for problem in settings_problems()
    ]
    if not found:
        found.extend(_missing_broker())
    from django.conf import settings as django_settings

    return found + _unknown_settings() + app_order_problems(list(django_settings.INSTALLED_APPS))


def _unknown_settings() -> list[checks.CheckMessage]:
    """A setting under our prefix that we do not read (a typo) would be ignored without a word."""
    from difflib import get_close_matches

    from django.conf import settings as django_settings

    from edx_event_bus_kafka.internal.settings.declarations import SETTING_SPECS

    known = sorted({name for spec in SETTING_SPECS for name in (spec.name, *spec.aliases)})
    found: list[checks.CheckMessage] = []
    for name in sorted(n for n in dir(django_settings) if n.startswith("EVENT_BUS_KAFKA_") and n not in known):
        close = get_close_matches(name, known, n=1, cutoff=0.75)
        found.append(checks.Warning(
            f"{name} is not a setting of edx-event-bus-kafka and is ignored"
            + (f"; did you mean {close[0]}?" if close else ""),
            hint="See the settings reference in the edx-event-bus-kafka documentation (Reference > Settings)",
            id="edx_event_bus_kafka.W002",
        ))
    return found


def app_order_problems(installed_apps: list[str]) -> list[checks.CheckMessage]:
    """Both apps define ``consume_events``; Django runs the one of the app listed first."""
    apps = [app.split(".apps.")[0] for app in installed_apps]
    if "openedx_events" in apps and "edx_event_bus_kafka" in apps \
            and apps.index("openedx_events") < apps.index("edx_event_bus_kafka"):
        return [checks.Warning(
            "openedx_events is listed before edx_event_bus_kafka in INSTALLED_APPS, so ./manage.py "
            "consume_events runs openedx-events' command, without this package's options "
            "(--concurrency, --heartbeat-file, --event-type, ...)",
            hint="List edx_event_bus_kafka before openedx_events in INSTALLED_APPS",
            id="edx_event_bus_kafka.W003",
        )]
    return []


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
