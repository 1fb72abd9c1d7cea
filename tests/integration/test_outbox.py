"""The transactional outbox as real processes on PostgreSQL and a real broker: outages, kill -9, two relays.

What a publisher does with each row (commit and rollback, failures, purging, the relay's exits) is
tested on the in-memory Kafka in tests/unit/test_outbox.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from edx_event_bus_kafka.testing import wait_for
from tests.support.kafka import read_messages
from tests.support.postgres import TemporaryPostgres

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def user_ids(messages) -> list[int]:
    """The event numbers (user ids) in the order the messages came, decoded with our decoder."""
    from edx_event_bus_kafka.internal.wire.decode import decode_message

    return [decode_message(m)[1]["enrollment"].user.id for m in messages]


# -- real processes on PostgreSQL --------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    server = TemporaryPostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def outbox_db(postgres):
    """A fresh, migrated PostgreSQL database; returns the environment processes need to use it."""
    name = f"outbox_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    env = {**os.environ, "TEST_POSTGRES_PORT": str(postgres.port), "TEST_POSTGRES_DB": name}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    return env


def process_env(outbox_db: dict, bootstrap: str, **settings) -> dict:
    return {**outbox_db, "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "EVENT_BUS_SETTINGS_JSON": json.dumps({"EVENT_BUS_KAFKA_DELIVERY_MODE": "outbox",
                                                   "EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC": 0.1, **settings})}


def run(env: dict, *argv: str, timeout: float = 120) -> str:
    result = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def start(env: dict, tmp_path: Path, name: str, *argv: str) -> tuple[subprocess.Popen, Path]:
    output = tmp_path / f"{name}.out"
    with open(output, "wb") as out:
        process = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, output


def backlog(env: dict) -> dict:
    return json.loads(run(env, "manage.py", "relay_outbox", "--status").strip().splitlines()[-1])


def drained(env: dict, outputs: list[Path], timeout: float, what: str = "the backlog to drain") -> None:
    """Wait for no pending rows; on timeout, fail with the backlog and the relays' last output lines."""
    try:
        wait_for(lambda: backlog(env)["pending"] == 0, timeout=timeout, what=what)
    except TimeoutError as error:
        tails = "\n".join(f"--- {path.name}:\n{path.read_text()[-3000:]}" for path in outputs)
        raise AssertionError(f"{error}; backlog {backlog(env)}\n{tails}") from None


def assert_per_key_order(numbers: list[int], keys: int) -> None:
    """Per key, events appear in increasing order (a re-sent batch restarts at its first event)."""
    by_key: dict[int, list[int]] = defaultdict(list)
    for number in numbers:
        by_key[number % keys].append(number)
    for key, sequence in by_key.items():
        firsts = list(dict.fromkeys(sequence))
        assert firsts == sorted(firsts), (key, sequence)


def test_broker_outage__requests_succeed_rows_wait_then_relay_publishes_all_in_order(
    outbox_db, kafka_broker_factory, tmp_path,
):
    """With the broker down, writes succeed and rows accumulate; once it is back the relay publishes all, in order."""
    broker = kafka_broker_factory()
    bootstrap = broker.bootstrap_servers
    broker.stop()  # the outage: nothing listens on that port now
    env = process_env(outbox_db, bootstrap, EVENT_BUS_KAFKA_OUTBOX_DELIVERY_TIMEOUT_SEC=1.0)
    assert "wrote 30" in run(env, "-m", "tests.support.outbox_script", "write", "--topic", "outage",
                             "--count", "30", "--keys", "3")
    assert backlog(env)["pending"] == 30

    broker.start()  # back, same port
    broker.create_topics(["outage"], partitions=3)
    # The writers had 1 s to give up on the absent broker; the relay gets the default 30 s, which a
    # new idempotent producer on a loaded machine needs (Tansu's InitProducerId alone takes 0.5-1 s).
    relay_env = process_env(outbox_db, bootstrap)
    relay, output = start(relay_env, tmp_path, "relay", "manage.py", "relay_outbox")
    try:
        drained(env, [output], timeout=60)
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(30) == 0, output.read_text()
    messages = read_messages(bootstrap, "outage", 30)
    numbers = user_ids(messages)
    assert sorted(numbers) == list(range(30))
    assert_per_key_order(numbers, 3)


def test_relay_killed_between_publish_and_mark__every_event_published_at_least_once_in_order(
    outbox_db, kafka_broker, tmp_path,
):
    """Kill -9 after the broker acknowledged but before the rows were marked: the next relay re-publishes them."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"crash-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=3)
    env = process_env(outbox_db, bootstrap, EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT=False)
    run(env, "-m", "tests.support.outbox_script", "write", "--topic", topic, "--count", "20", "--keys", "4")
    crashing, output = start(env, tmp_path, "crash", "-m", "tests.support.outbox_script", "crash-relay")
    wait_for(lambda: "acknowledged 20" in output.read_text(), timeout=60, what="the batch to be acknowledged")
    crashing.send_signal(signal.SIGKILL)
    crashing.wait(10)
    assert backlog(env)["pending"] == 20  # published but never marked

    relay, relay_output = start(env, tmp_path, "relay", "manage.py", "relay_outbox")
    try:
        drained(env, [relay_output], timeout=60)
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(30) == 0, relay_output.read_text()
    numbers = user_ids(read_messages(bootstrap, topic, 40))
    assert sorted(set(numbers)) == list(range(20))
    assert len(numbers) == 40  # each exactly twice: once per relay, same ce_id
    assert_per_key_order(numbers, 4)


def test_two_relays_on_postgresql_publish_every_row_exactly_once(outbox_db, kafka_broker, tmp_path):
    """Two relays running at once take rows under row locks: each row is published once, per-key order kept."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"two-relays-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=3)
    env = process_env(outbox_db, bootstrap, EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT=False,
                      EVENT_BUS_KAFKA_OUTBOX_BATCH_SIZE=25)
    run(env, "-m", "tests.support.outbox_script", "write", "--topic", topic, "--count", "300", "--keys", "5")
    relays = [start(env, tmp_path, f"relay{n}", "manage.py", "relay_outbox") for n in (1, 2)]
    try:
        drained(env, [output for _, output in relays], timeout=90)
    finally:
        for process, _ in relays:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(30) for process, _ in relays]
    assert codes == [0, 0], [output.read_text()[-2000:] for _, output in relays]
    messages = read_messages(bootstrap, topic, 301, timeout=10)
    ids = [dict(m.headers())["ce_id"] for m in messages]
    assert len(ids) == 300 and len(set(ids)) == 300
    assert_per_key_order(user_ids(messages), 5)


def test_relay_across_a_broker_restart_that_forgot_its_producer_state__publishes_what_is_written_after(
    outbox_db, kafka_broker_factory, tmp_path,
):
    """The relay's idempotent producer is rejected by a restarted broker that lost its state; it recovers."""
    broker = kafka_broker_factory()
    bootstrap = broker.bootstrap_servers
    topic = f"restart-{uuid.uuid4().hex[:6]}"
    broker.create_topics([topic], partitions=2)
    env = process_env(outbox_db, bootstrap, EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT=False,
                      EVENT_BUS_KAFKA_OUTBOX_DELIVERY_TIMEOUT_SEC=2.0)
    run(env, "-m", "tests.support.outbox_script", "write", "--topic", topic, "--count", "10", "--keys", "2")
    relay, output = start(env, tmp_path, "relay", "manage.py", "relay_outbox")
    try:
        drained(env, [output], timeout=60, what="the first rows to be published")
        broker.stop()  # Tansu forgets everything; Apache Kafka keeps its log and producer state
        broker.start()
        if topic not in broker_topics(bootstrap):
            broker.create_topics([topic], partitions=2)
        run(env, "-m", "tests.support.outbox_script", "write", "--topic", topic, "--count", "20", "--keys", "2")
        drained(env, [output], timeout=90, what="the rows written after the restart")
    finally:
        relay.send_signal(signal.SIGTERM)
        code = relay.wait(30)
    log = output.read_text()
    assert code == 0, log[-3000:]
    assert sorted(set(user_ids(read_messages(bootstrap, topic, 60, timeout=10)))) == list(range(20))
    # Tansu forgets producer ids: the relay replaced its client once. Apache Kafka kept them: no need.
    assert log.count("replacing the Kafka client") <= 1, log[-3000:]


def broker_topics(bootstrap: str) -> set[str]:
    from confluent_kafka.admin import AdminClient

    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)
