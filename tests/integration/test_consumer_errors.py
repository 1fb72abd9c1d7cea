"""consume_events as a real process, ours and openedx-events': configuration errors, the kill switch, consuming.

The loop's error handling (unusable messages, dead letters, retries, limits, fatal errors) is tested
on the in-memory Kafka in tests/unit/test_consumer.py.
"""
from __future__ import annotations

import pytest
from confluent_kafka import Producer

from edx_event_bus_kafka.internal.runtime.worker import EXIT_CONFIG, EXIT_OK
from tests.support.memory_bus import encoded_event
from tests.support.workers import Worker

pytestmark = pytest.mark.integration

OPENEDX_EVENTS_COMMAND = [
    "-c",
    "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings'); import django; "
    "django.setup(); from django.core.management import call_command; "
    "from openedx_events.management.commands.consume_events import Command; "
    "call_command(Command(), *sys.argv[1:])",
]


@pytest.mark.parametrize("command", ["ours", "openedx_events"])
@pytest.mark.parametrize(
    ("args", "worker_settings", "expected"),
    [
        ([], {"EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": -1}, "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT=-1"),
        (["--extra", '{"no_such_option": 1}'], {}, "unknown consumer option(s) no_such_option"),
        (["--extra", '{"offset_time": "2026-11-28T10:00:00"}'], {}, "has no timezone"),
    ],
    ids=["bad-setting", "unknown-option", "naive-offset-time"],
)
def test_bad_configuration__exits_2_naming_the_problem_with_either_command(
    bus_settings, tmp_path, command, args, worker_settings, expected,
):
    """Bad settings or options exit with status 2 and a message naming them, under either consume_events."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    base = ["-t", "some-topic", "-g", "some-group", *args]
    argv = ["manage.py", "consume_events", *base] if command == "ours" else [*OPENEDX_EVENTS_COMMAND, *base]
    worker = Worker(tmp_path, bootstrap, argv, settings=worker_settings).start()
    assert worker.wait(30) == EXIT_CONFIG, worker.output()
    assert expected in worker.output()


@pytest.mark.parametrize("command", ["ours", "openedx_events"])
def test_kill_switch__exits_zero_at_once_without_consuming(bus_settings, kafka_topic, tmp_path, command):
    """EVENT_BUS_KAFKA_CONSUMERS_ENABLED=False makes the worker log and exit 0 without consuming."""
    base = ["-t", kafka_topic, "-g", "g"]
    argv = ["manage.py", "consume_events", *base] if command == "ours" else [*OPENEDX_EVENTS_COMMAND, *base]
    worker = Worker(tmp_path, bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, argv,
                    settings={"EVENT_BUS_KAFKA_CONSUMERS_ENABLED": False}).start()
    assert worker.wait(30) == EXIT_OK
    assert "Kafka consumers not enabled, exiting." in worker.output()


def test_openedx_events_command__consumes_like_ours(bus_settings, kafka_topic, tmp_path):
    """openedx-events' consume_events command (through EVENT_BUS_CONSUMER) runs our consumer the same way."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    key, value, headers, _ = encoded_event()
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    producer.produce(kafka_topic, key=key, value=value, headers=headers)
    producer.flush(10)
    worker = Worker(tmp_path, bootstrap, [*OPENEDX_EVENTS_COMMAND, "-t", kafka_topic, "-g", "oe-group"]).start()
    try:
        worker.wait_for_entries(lambda e: any(x["phase"] == "done" for x in e))
    finally:
        assert worker.stop() == 0, worker.output()
