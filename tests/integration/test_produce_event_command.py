"""./manage.py produce_event as an operator runs it: sends one event, or fails clearly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.kafka import read_messages

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SIGNAL = "openedx_events.learning.signals.SESSION_LOGIN_COMPLETED"
DATA = {"user": {"id": 123, "is_active": True, "pii": {"username": "foobob", "email": "bob@foo.example",
                                                        "name": "Bob Foo"}}}


def produce_event(bootstrap: str, *args: str, prefix: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    if prefix:
        env["EVENT_BUS_TOPIC_PREFIX"] = prefix
    return subprocess.run([sys.executable, "manage.py", "produce_event", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_produce_event__sends_one_event_with_the_reference_flags(bus_settings, kafka_broker):
    """--signal/--topic/--key-field/--data send one event and exit 0 once acknowledged, naming the full topic."""
    bootstrap = bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS
    topic = f"login-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([f"stage-{topic}"], partitions=1)
    result = produce_event(bootstrap, "--signal", SIGNAL, "--topic", topic, "--key-field", "user.pii.username",
                           "--data", json.dumps(DATA), prefix="stage")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"to topic stage-{topic}"), result.stdout  # the topic on the broker
    (message,) = read_messages(bootstrap, f"stage-{topic}", 1)
    assert dict(message.headers())["ce_type"] == b"org.openedx.learning.auth.session.login.completed.v1"
    assert message.key()[10:] == b"\x0cfoobob"  # Avro string after the single-object header


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--signal", "no.such.SIGNAL"], "cannot be imported"),
        (["--signal", "json.dumps"], "not an OpenEdxPublicSignal"),
        (["--data", "{not json"], "--data is not valid JSON"),
        (["--data", "[1, 2]"], "--data must be a JSON object"),
        (["--key-field", "user.pii.nothing"], "was not delivered"),
    ],
    ids=["unimportable-signal", "not-a-signal", "bad-json", "json-not-object", "bad-key-path"],
)
def test_produce_event__bad_input_exits_non_zero_with_a_clear_message(bus_settings, kafka_topic, args, expected):
    """Each kind of bad input gives a non-zero exit and says what is wrong."""
    defaults = {"--signal": SIGNAL, "--topic": kafka_topic, "--key-field": "user.pii.username",
                "--data": json.dumps(DATA)}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = [item for flag, value in {**defaults, **given}.items() for item in (flag, value)]
    result = produce_event(bus_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, *argv)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
