"""Shared fixtures. The broker fixtures come from edx_event_bus_kafka.pytest_plugin (entry point)."""
from __future__ import annotations

import logging

import pytest


@pytest.fixture
def event_bus_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture everything the event bus logs, at DEBUG and above."""
    caplog.set_level(logging.DEBUG, logger="edx_event_bus_kafka")
    return caplog


@pytest.fixture
def bus_settings(settings, kafka_broker):
    """Django settings pointing the event bus at the test broker (no registry)."""
    settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap_servers
    return settings


@pytest.fixture(autouse=True)
def _fresh_event_bus_state():
    """Each test starts with no producer, no cached schemas and no recorded telemetry."""
    from edx_event_bus_kafka.internal import producer, serialization, shutdown
    from tests.support import telemetry

    telemetry.clear()
    yield
    producer.forget_producer(timeout=5)
    serialization.clear_caches()
    shutdown.reset_for_tests()
