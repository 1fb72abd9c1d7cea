"""An outage is logged as it begins, as a reminder while it lasts, and as it ends: not once per attempt."""
from __future__ import annotations

import logging

from django.db import OperationalError

from edx_event_bus_kafka.internal.runtime.outages import OutageLog


def test_many_failed_attempts_log_the_start_once_and_the_end_with_duration_and_count(caplog):
    logger = logging.getLogger("edx_event_bus_kafka.tests.outage")
    caplog.set_level(logging.INFO, logger=logger.name)
    outage = OutageLog(logger, "Relay: database 'default'", reminder_every=3600)
    outage.recovered()  # nothing to report while all is well
    for _ in range(30):
        outage.failed(OperationalError("connection refused\n\tIs the server running?"), retry_in=0.5)
    outage.recovered()
    began, ended = [record.getMessage() for record in caplog.records]
    assert began.startswith("Relay: database 'default' unavailable (OperationalError: connection refused Is the "
                            "server running?); retrying in 0.5 s")
    assert ended.startswith("Relay: database 'default' available again after ") and "30 failed attempts" in ended


def test_a_long_outage_gets_reminders(caplog):
    logger = logging.getLogger("edx_event_bus_kafka.tests.outage")
    caplog.set_level(logging.INFO, logger=logger.name)
    outage = OutageLog(logger, "Relay: database 'default'", reminder_every=0)
    for _ in range(3):
        outage.failed(OperationalError("down"), retry_in=1)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3 and all("still unavailable after" in m for m in messages[1:])
    assert "3 attempts" in messages[2]
