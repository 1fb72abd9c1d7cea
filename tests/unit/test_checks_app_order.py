"""The system check that notices openedx_events listed before us (its consume_events would win)."""
from __future__ import annotations

from edx_event_bus_kafka.checks import app_order_problems


def test_openedx_events_first__warned():
    (warning,) = app_order_problems(["django.contrib.auth", "openedx_events", "edx_event_bus_kafka.apps.Config"])
    assert warning.id == "edx_event_bus_kafka.W003" and "consume_events" in warning.msg


def test_our_app_first_or_openedx_events_absent__no_warning():
    assert app_order_problems(["edx_event_bus_kafka", "openedx_events"]) == []
    assert app_order_problems(["edx_event_bus_kafka"]) == []
