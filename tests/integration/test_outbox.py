"""The transactional outbox: exactly what commits is published, through outages, crashes and two relays."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from django.db import transaction
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.models import OutboxEvent
from edx_event_bus_kafka.testing import wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support.kafka import read_messages
from tests.support.postgres import TemporaryPostgres

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def send(producer, topic: str, number: int, keys: int = 1) -> EventsMetadata:
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    data = enrollment_event_data(number, course=f"course-v1:edX+K{number % keys}+2026")
    producer.send(signal=ENROLLMENT_SIGNAL, topic=topic, event_key_field=ENROLLMENT_KEY_FIELD, event_data=data,
                  event_metadata=metadata)
    return metadata


def user_ids(messages) -> list[int]:
    """The event numbers (user ids) in the order the messages came, decoded with our decoder."""
    from edx_event_bus_kafka.internal.wire.decode import decode_message

    return [decode_message(m)[1]["enrollment"].user.id for m in messages]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def outbox_settings(bus_settings):
    bus_settings.EVENT_BUS_KAFKA_DELIVERY_MODE = "outbox"
    return bus_settings


@pytest.mark.django_db(transaction=True)
def test_outbox__rolled_back_transaction_writes_and_publishes_nothing(outbox_settings, kafka_topic):
    """Events sent in a transaction that rolls back leave no row and never reach Kafka."""
    producer = create_producer()
    with pytest.raises(RuntimeError), transaction.atomic():
        send(producer, kafka_topic, 1)
        assert OutboxEvent.objects.count() == 1
        raise RuntimeError("roll back")
    kept = send(producer, kafka_topic, 2)  # autocommit: written and published at once
    wait_for(lambda: OutboxEvent.objects.filter(status=OutboxEvent.PUBLISHED).count() == 1, timeout=20,
             what="the committed row to be published")
    assert OutboxEvent.objects.count() == 1
    messages = read_messages(outbox_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, kafka_topic, 2, timeout=5)
    assert [dict(m.headers())["ce_id"] for m in messages] == [str(kept.id).encode()]


@pytest.mark.django_db(transaction=True)
def test_outbox__committed_transaction_publishes_every_event_in_order(outbox_settings, kafka_topic):
    """All events of a committed transaction are published right after commit, in order, and marked."""
    producer = create_producer()
    with transaction.atomic():
        sent = [send(producer, kafka_topic, number) for number in range(20)]
        assert producer.stats.snapshot()["sent"] == 0
    wait_for(lambda: OutboxEvent.objects.filter(status=OutboxEvent.PUBLISHED).count() == 20, timeout=20,
             what="all rows to be published")
    messages = read_messages(outbox_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, kafka_topic, 20)
    assert [dict(m.headers())["ce_id"] for m in messages] == [str(m.id).encode() for m in sent]
    assert user_ids(messages) == list(range(20))


@pytest.mark.django_db(transaction=True)
def test_outbox__writing_needs_neither_broker_nor_registry(settings):
    """With broker and registry unreachable, send still writes the row in the transaction and raises nothing."""
    settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{closed_port()}"
    settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = f"http://127.0.0.1:{closed_port()}"
    settings.EVENT_BUS_KAFKA_DELIVERY_MODE = "outbox"
    settings.EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT = False
    producer = create_producer()
    with transaction.atomic():
        metadata = send(producer, "offline-topic", 7)
    row = OutboxEvent.objects.get()
    assert row.event_id == str(metadata.id) and row.status == OutboxEvent.PENDING
    assert json.loads(row.event_data)["enrollment"]["user"]["id"] == 7
    assert producer.stats.snapshot()["outboxed"] == 1 and producer.stats.snapshot()["failed"] == 0


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
    relay, output = start(env, tmp_path, "relay", "manage.py", "relay_outbox")
    try:
        wait_for(lambda: backlog(env)["pending"] == 0, timeout=60, what="the backlog to drain")
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
        wait_for(lambda: backlog(env)["pending"] == 0, timeout=60, what="the backlog to drain")
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
        wait_for(lambda: backlog(env)["pending"] == 0, timeout=90, what="the backlog to drain")
    finally:
        for process, _ in relays:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(30) for process, _ in relays]
    assert codes == [0, 0], [output.read_text()[-2000:] for _, output in relays]
    messages = read_messages(bootstrap, topic, 301, timeout=10)
    ids = [dict(m.headers())["ce_id"] for m in messages]
    assert len(ids) == 300 and len(set(ids)) == 300
    assert_per_key_order(user_ids(messages), 5)


@pytest.mark.django_db(transaction=True)
def test_unserializable_row__moved_aside_with_its_error_and_the_rest_published(outbox_settings, kafka_topic):
    """A row that can never be serialized is marked failed with its error; rows after it still go out."""
    from edx_event_bus_kafka.internal.outbox.publisher import OutboxPublisher, backlog

    outbox_settings.EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT = False
    producer = create_producer()
    send(producer, kafka_topic, 1)
    broken = OutboxEvent.objects.create(topic=kafka_topic, event_type="org.openedx.nothing.v1", event_key_field="x",
                                        event_id="broken", event_data="{}", event_metadata="{}")
    send(producer, kafka_topic, 2)
    publisher = OutboxPublisher()
    try:
        result = publisher.publish_batch()
    finally:
        publisher.close()
    assert (result.published, result.failed_permanently, result.left_pending) == (2, 1, 0)
    broken.refresh_from_db()
    assert broken.status == OutboxEvent.FAILED and "org.openedx.nothing.v1" in broken.last_error
    assert backlog() == {"pending": 0, "failed": 1, "oldest_pending_age_sec": None}
    assert user_ids(read_messages(outbox_settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, kafka_topic, 2)) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_purge__deletes_published_rows_older_than_retention_only(outbox_settings, kafka_topic):
    """purge() removes published rows past EVENT_BUS_KAFKA_OUTBOX_RETENTION_SEC and keeps pending and recent ones."""
    from datetime import timedelta

    from django.utils import timezone

    from edx_event_bus_kafka.internal.outbox.publisher import OutboxPublisher

    outbox_settings.EVENT_BUS_KAFKA_OUTBOX_RETENTION_SEC = 3600
    now = timezone.now()
    rows = {}
    for name, status, published_at in [("old", OutboxEvent.PUBLISHED, now - timedelta(hours=2)),
                                       ("recent", OutboxEvent.PUBLISHED, now - timedelta(minutes=5)),
                                       ("pending", OutboxEvent.PENDING, None)]:
        rows[name] = OutboxEvent.objects.create(topic=kafka_topic, event_type="t", event_key_field="k", event_id=name,
                                                event_data="{}", event_metadata="{}", status=status,
                                                published_at=published_at)
    publisher = OutboxPublisher()
    try:
        assert publisher.purge() == 1
    finally:
        publisher.close()
    assert set(OutboxEvent.objects.values_list("event_id", flat=True)) == {"recent", "pending"}


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
        wait_for(lambda: backlog(env)["pending"] == 0, timeout=60, what="the first rows to be published")
        broker.stop()  # Tansu forgets everything; Apache Kafka keeps its log and producer state
        broker.start()
        if topic not in broker_topics(bootstrap):
            broker.create_topics([topic], partitions=2)
        run(env, "-m", "tests.support.outbox_script", "write", "--topic", topic, "--count", "20", "--keys", "2")
        wait_for(lambda: backlog(env)["pending"] == 0, timeout=90, what="the rows written after the restart")
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
