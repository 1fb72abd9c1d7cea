"""A broker outage under a real worker reads as a story in its output: lost once, back once.

librdkafka reports each failed reconnect; the worker shows the first (collapsed repeats after it)
and, once the broker answers again, one line saying it is reachable again and after how long.
"""
from __future__ import annotations

import re
import uuid

import pytest

from edx_event_bus_kafka.testing import wait_for
from tests.support.workers import Worker

pytestmark = pytest.mark.integration


def test_broker_outage_under_a_worker__one_line_when_lost_one_when_reachable_again(
    bus_settings, kafka_broker_factory, tmp_path,
):
    broker = kafka_broker_factory()
    topic, group = f"outage-{uuid.uuid4().hex[:6]}", f"group-{uuid.uuid4().hex[:6]}"
    broker.create_topics([topic], partitions=1)
    worker = Worker.consume_events(tmp_path, broker.bootstrap_servers, topic, group).start()
    try:
        wait_for(lambda: "Assigned partitions" in worker.output(), timeout=60, what="the worker to join")
        broker.stop()
        wait_for(lambda: "retries by itself" in worker.output(), timeout=30, what="the lost broker to be logged")
        broker.start()
        wait_for(lambda: "reachable again" in worker.output(), timeout=60, what="the broker's return to be logged")
        during = worker.output().split("Assigned partitions", 1)[1]
    finally:
        assert worker.stop() == 0, worker.output()
    back = [line for line in during.splitlines() if "reachable again" in line]
    assert len(back) == 1, during
    assert ("Kafka consumer: the brokers are reachable again after" in back[0]
            or f"Kafka consumer: broker {broker.bootstrap_servers} is reachable again after" in back[0]), back
    before_back = during.split("reachable again", 1)[0]
    # One line per kind of error (each broker connection, "all brokers down"), not one per attempt.
    errors = [re.sub(r"\d+", "#", line.split("retries by itself", 1)[1])
              for line in before_back.splitlines() if "retries by itself" in line]
    assert errors and len(errors) == len(set(errors)), before_back
