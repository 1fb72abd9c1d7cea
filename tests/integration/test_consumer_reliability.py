"""The consumer under long retries and crashes, with real consume_events processes, on either broker.

* A retry that lasts longer than librdkafka's ``max.poll.interval.ms`` does not cost the worker its
  group membership: retries wait in their lane while the poll loop keeps polling.
* A kill -9 re-delivers a bounded number of finished messages: offsets are committed at least every
  ``EVENT_BUS_KAFKA_CONSUMER_COMMIT_EVERY_MESSAGES`` messages (not once per batch of up to 500).
"""
from __future__ import annotations

import signal
import uuid

import pytest

from edx_event_bus_kafka.testing import fast_consumer_config
from tests.integration.test_parallel_consumer import done, produce_keyed
from tests.support.kafka import committed
from tests.support.workers import Worker

pytestmark = pytest.mark.integration

#: Far shorter than librdkafka's default (300 s) so the test can outlast it; at least the session timeout.
MAX_POLL_INTERVAL_MS = 6000


def test_retry_longer_than_max_poll_interval__worker_keeps_its_partitions_and_processes_the_event_once(
    bus_settings, kafka_broker, tmp_path,
):
    """The database is "down" for twice max.poll.interval.ms: no leave, no rebalance, one successful run."""
    topic, group = f"long-retry-{uuid.uuid4().hex[:6]}", f"group-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=2)
    (event_id,) = produce_keyed(topic, 1, keys=1).values()
    database_back = tmp_path / "database-back"
    worker = Worker.consume_events(tmp_path, kafka_broker.bootstrap_servers, topic, group,
                                   mode=f"db_down_until:{database_back}", settings={
        "EVENT_BUS_KAFKA_CONSUMER_CONFIG": {**fast_consumer_config(), "max.poll.interval.ms": MAX_POLL_INTERVAL_MS},
        "EVENT_BUS_KAFKA_CONSUMER_RETRY_BACKOFF_MAX_SEC": 0.5,
    }).start()
    try:
        first = worker.wait_for_entries(bool, timeout=40, what="the first attempt")[0]
        worker.wait_for_entries(lambda e: e[-1]["time"] - first["time"] > 2 * MAX_POLL_INTERVAL_MS / 1000,
                                timeout=60, what="retries for twice max.poll.interval.ms")
        database_back.touch()
        worker.wait_for_entries(lambda e: len(done(e)) > 0, timeout=30, what="the event to be processed")
        before_stop = worker.output()
    finally:
        assert worker.stop() == 0, worker.output()
    assert [e["id"] for e in done(worker.entries())] == [event_id]
    assert len(worker.entries("start")) > 10  # it really was retried all along
    assert "maximum poll interval" not in before_stop.lower(), before_stop
    assert "Revoked partitions" not in before_stop and "Lost partitions" not in before_stop, before_stop
    assert before_stop.count("Assigned partitions") == 1, before_stop
    assert "decision=retry (database unavailable)" in before_stop


def test_kill_9__finished_messages_processed_again_are_bounded_by_the_commit_cadence(
    bus_settings, kafka_broker, tmp_path,
):
    """At most two commit intervals' worth of finished messages run again after a kill -9 (not a 500 batch)."""
    every = 50
    topic, group = f"cadence-{uuid.uuid4().hex[:6]}", f"group-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=1)
    ids = produce_keyed(topic, 600, keys=20)
    bootstrap = kafka_broker.bootstrap_servers
    settings = {"EVENT_BUS_KAFKA_CONSUMER_COMMIT_EVERY_MESSAGES": every,
                "EVENT_BUS_KAFKA_CONSUMER_COMMIT_INTERVAL_SEC": 60.0}  # so only the message count commits
    first = Worker.consume_events(tmp_path, bootstrap, topic, group, mode="sleep:0.002", name="first",
                                  log_path=tmp_path / "first.jsonl", settings=settings).start()
    first.wait_for_entries(lambda e: len(done(e)) >= 230, timeout=60, what="a few hundred events")
    first.signal(signal.SIGKILL)
    first.wait(10)
    finished_by_first = {e["id"] for e in first.entries("done")}
    at_kill = committed(bootstrap, group, topic, 1)[0]
    second = Worker.consume_events(tmp_path, bootstrap, topic, group, name="second",
                                   log_path=tmp_path / "second.jsonl", settings=settings).start()
    try:
        second.wait_for_entries(lambda e: {x["id"] for x in done(e)} | finished_by_first >= set(ids.values()),
                                timeout=90, what="every event processed")
    finally:
        assert second.stop() == 0, second.output()
    again = finished_by_first & {e["id"] for e in second.entries("done")}
    print(f"killed after {len(finished_by_first)} finished events; committed offset {at_kill}; "
          f"{len(again)} processed again")
    assert len(finished_by_first) - at_kill <= 2 * every, (len(finished_by_first), at_kill)
    assert len(again) <= 2 * every
