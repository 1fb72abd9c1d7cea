"""Shared fixtures. The broker fixtures come from edx_event_bus_kafka.pytest_plugin (entry point)."""
from __future__ import annotations

import logging

import pytest


@pytest.fixture
def event_bus_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture everything the event bus logs, at DEBUG and above."""
    caplog.set_level(logging.DEBUG, logger="edx_event_bus_kafka")
    return caplog
