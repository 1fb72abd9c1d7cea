"""A service without New Relic and without OPENEDX_TELEMETRY gets no monitoring warning from us."""
from __future__ import annotations

import logging

import pytest

from edx_event_bus_kafka.internal.runtime import monitoring


@pytest.mark.skipif(monitoring._NEW_RELIC_INSTALLED, reason="the New Relic agent is installed in this venv")
def test_no_backend_possible__attributes_and_errors_are_skipped_without_a_warning(settings, caplog):
    """edx-django-utils would log "Could not load OPENEDX_TELEMETRY option ... NewRelicBackend" otherwise."""
    del settings.OPENEDX_TELEMETRY  # edx-django-utils then defaults to New Relic, which is not installed
    caplog.set_level(logging.WARNING)
    monitoring.set_attribute("kafka_topic", "t")
    monitoring.record_error(ValueError("boom"))
    assert monitoring._monitoring_configured() is False
    assert "OPENEDX_TELEMETRY" not in caplog.text


def test_with_a_configured_backend__monitoring_stays_on(settings):
    settings.OPENEDX_TELEMETRY = ["tests.support.telemetry.RecordingBackend"]
    assert monitoring._monitoring_configured() is True
