"""Repeated log lines collapse into one, then come back with a count."""
from __future__ import annotations

import logging

import pytest

from edx_event_bus_kafka.internal.runtime.log_repeats import RepeatFilter


@pytest.fixture
def flood_logger(caplog):
    logger = logging.getLogger("edx_event_bus_kafka.tests.flood")
    caplog.set_level(logging.INFO, logger=logger.name)
    yield logger
    logger.filters.clear()


def test_identical_lines_but_for_numbers_get_through_once(flood_logger, caplog):
    """A reconnect failure logged 50 times (timings differ) reads as one line; other lines still pass."""
    flood_logger.addFilter(RepeatFilter(period=3600))
    for attempt in range(50):
        flood_logger.error("FAIL [svc#consumer-%d] Connect failed (after %dms in state CONNECT)", 3, attempt)
    flood_logger.error("something else")
    assert [r.getMessage() for r in caplog.records] == [
        "FAIL [svc#consumer-3] Connect failed (after 0ms in state CONNECT)", "something else",
    ]


def test_a_repeat_after_the_period_says_how_many_were_dropped(flood_logger, caplog):
    """Once the period has passed, the line comes back with the number of repeats held back."""
    repeats = RepeatFilter(period=0.0)
    flood_logger.addFilter(repeats)
    flood_logger.warning("broker down")
    repeats.period = 3600.0
    flood_logger.warning("broker down")
    flood_logger.warning("broker down")
    repeats.period = 0.0
    flood_logger.warning("broker down")
    assert [r.getMessage() for r in caplog.records] == [
        "broker down", "broker down (and 2 more like it in the last 0 s)",
    ]


def test_log_collapsed__our_own_transient_error_warning_is_logged_once_per_minute(flood_logger, caplog):
    """The producer's "librdkafka retries by itself" warning, fired at every reconnect, shows once."""
    from edx_event_bus_kafka.internal.runtime.log_repeats import log_collapsed

    for attempt in range(20):
        log_collapsed(flood_logger, logging.WARNING, f"Kafka producer error: connect failed after {attempt}ms")
    log_collapsed(flood_logger, logging.WARNING, "Kafka producer error: all brokers down")
    assert [r.getMessage() for r in caplog.records] == [
        "Kafka producer error: connect failed after 0ms", "Kafka producer error: all brokers down",
    ]
