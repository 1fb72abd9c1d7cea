"""Security settings end to end, on Apache Kafka listeners that require them.

The broker opens SASL/PLAIN over TLS (what the reference's ``EVENT_BUS_KAFKA_API_KEY`` / ``_SECRET``
settings mean), SASL/SCRAM-SHA-512 and mutual TLS, with a throw-away CA. For each, real processes
(``produce_event``, ``consume_events``, ``create_event_bus_topics``, ``event_bus_status``,
``relay_outbox``) work; a wrong password, an untrusted certificate or a missing client certificate
ends each of them quickly with one clear line and the documented exit status; and no password
appears in any output or broker log.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from edx_event_bus_kafka.internal.runtime.heartbeat import Heartbeat
from edx_event_bus_kafka.internal.wire.records import event_data_to_record
from edx_event_bus_kafka.testing import ApacheKafkaBroker
from edx_event_bus_kafka.testing.tls import CertificateAuthority
from tests.events import ENROLLMENT_KEY_FIELD, enrollment_event_data
from tests.support.kafka import read_messages
from tests.support.workers import ROOT, Worker

pytestmark = [pytest.mark.integration, pytest.mark.apache_kafka]

PLAIN_USER, PLAIN_PASSWORD = "edx-service", "plain-Pa55word-7f3a"
SCRAM_USER, SCRAM_PASSWORD = "edx-scram", "scram-Pa55word-91c2"
WRONG_PASSWORD = "wrong-Pa55word-0000"
PASSWORDS = (PLAIN_PASSWORD, SCRAM_PASSWORD, WRONG_PASSWORD)


@pytest.fixture(scope="module")
def secure_kafka():
    broker = ApacheKafkaBroker(scram_users={SCRAM_USER: SCRAM_PASSWORD}, plain_users={PLAIN_USER: PLAIN_PASSWORD},
                               tls=True).start()
    try:
        yield broker
    finally:
        broker.close()


def security_settings(broker: ApacheKafkaBroker, method: str, *, password: str | None = None) -> dict[str, Any]:
    """Django settings for one way of connecting; ``password`` replaces the right one."""
    if method == "reference-plain":
        return {"EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": broker.listener("SASL_SSL"),
                "EVENT_BUS_KAFKA_API_KEY": PLAIN_USER, "EVENT_BUS_KAFKA_API_SECRET": password or PLAIN_PASSWORD,
                "EVENT_BUS_KAFKA_CLIENT_CONFIG": {"ssl.ca.location": str(broker.ca_file)}}
    if method == "scram":
        return {"EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": broker.listener("SASL_PLAINTEXT"),
                "EVENT_BUS_KAFKA_CLIENT_CONFIG": {
                    "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": SCRAM_USER, "sasl.password": password or SCRAM_PASSWORD}}
    if method == "mtls":
        certificate = broker.client_certificate("edx-service-client")
        return {"EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": broker.listener("SSL"),
                "EVENT_BUS_KAFKA_CLIENT_CONFIG": {
                    "security.protocol": "SSL", "ssl.ca.location": str(broker.ca_file),
                    "ssl.certificate.location": str(certificate.certificate),
                    "ssl.key.location": str(certificate.key)}}
    raise AssertionError(method)


def manage(settings: dict[str, Any], *argv: str, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``manage.py ARGV`` as a real process with ``settings``; asserts no password is in its output."""
    env = {**os.environ, "EVENT_BUS_SETTINGS_JSON": json.dumps(settings), "PYTHONUNBUFFERED": "1",
           "TEST_DATABASE_PATH": str(tmp_path / "db.sqlite3")}
    env.pop("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", None)
    result = subprocess.run([sys.executable, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert_no_password(result.stdout + result.stderr)
    return result


def assert_no_password(text: str) -> None:
    for password in PASSWORDS:
        assert password not in text


def produce_event_args(topic: str) -> list[str]:
    """``produce_event`` arguments for one enrollment event (the signal the test receiver records)."""
    data = json.dumps(event_data_to_record(enrollment_event_data(7)), default=str)
    return ["produce_event", "--signal", "openedx_events.learning.signals.COURSE_ENROLLMENT_CHANGED",
            "--topic", topic, "--key-field", ENROLLMENT_KEY_FIELD, "--data", data, "--timeout", "20"]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "Kafka refused" in line]


@pytest.mark.parametrize("method", ["reference-plain", "scram", "mtls"])
def test_secured_listener__producer_consumer_and_admin_commands_work(secure_kafka, tmp_path, method):
    """With each security method, topics are created, an event is produced, consumed, and the status reported."""
    settings = security_settings(secure_kafka, method)
    topic = f"secure-{method}-{uuid.uuid4().hex[:6]}"
    created = manage(settings, "create_event_bus_topics", "--topic", topic, "--partitions", "2", tmp_path=tmp_path)
    assert created.returncode == 0, created.stdout + created.stderr
    assert topic in secure_kafka.admin().list_topics(timeout=10).topics

    produced = manage(settings, *produce_event_args(topic), tmp_path=tmp_path)
    assert produced.returncode == 0, produced.stdout + produced.stderr
    assert len(read_messages(secure_kafka.bootstrap_servers, topic, 1)) == 1

    group = f"secure-group-{uuid.uuid4().hex[:6]}"
    worker = Worker.consume_events(tmp_path, settings["EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"], topic, group,
                                   settings=settings).start()
    try:
        worker.wait_for_entries(lambda e: any(x["phase"] == "done" for x in e), timeout=60)
    finally:
        assert worker.stop() == 0, worker.output()
    assert_no_password(worker.output())

    status = manage(settings, "event_bus_status", "-t", topic, "-g", group, "--json", "--no-outbox",
                    tmp_path=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["total_lag"] == 0


@pytest.mark.parametrize("method", ["reference-plain", "scram", "mtls"])
def test_secured_listener__outbox_relay_publishes(secure_kafka, tmp_path, method):
    """relay_outbox publishes outbox rows through each security method."""
    settings = {**security_settings(secure_kafka, method), "EVENT_BUS_KAFKA_DELIVERY_MODE": "outbox",
                "EVENT_BUS_KAFKA_OUTBOX_PUBLISH_ON_COMMIT": False, "EVENT_BUS_KAFKA_OUTBOX_POLL_INTERVAL_SEC": 0.1}
    topic = f"secure-outbox-{method}-{uuid.uuid4().hex[:6]}"
    secure_kafka.create_topics([topic], partitions=2)
    assert manage(settings, "migrate", "-v", "0", tmp_path=tmp_path).returncode == 0
    env = {**os.environ, "EVENT_BUS_SETTINGS_JSON": json.dumps(settings),
           "TEST_DATABASE_PATH": str(tmp_path / "db.sqlite3")}
    subprocess.run([sys.executable, "-m", "tests.support.outbox_script", "write", "--topic", topic, "--count", "5"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    relay = Worker(tmp_path, settings["EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"], ["manage.py", "relay_outbox"],
                   name="relay", settings=settings)
    relay.env["TEST_DATABASE_PATH"] = str(tmp_path / "db.sqlite3")
    relay.start()
    try:
        assert len(read_messages(secure_kafka.bootstrap_servers, topic, 5, timeout=60)) == 5
    finally:
        assert relay.stop() == 0, relay.output()
    assert_no_password(relay.output())


REFUSALS = [
    ("reference-plain", {"password": WRONG_PASSWORD}, "authentication failed"),
    ("scram", {"password": WRONG_PASSWORD}, "authentication failed"),
    ("reference-plain", {"untrusted_ca": True}, "TLS handshake failed"),
    ("mtls", {"no_client_certificate": True}, "TLS handshake failed"),
]


def refused_settings(broker: ApacheKafkaBroker, tmp_path: Path, method: str, fault: dict[str, Any]) -> dict[str, Any]:
    settings = security_settings(broker, method, password=fault.get("password"))
    client = settings["EVENT_BUS_KAFKA_CLIENT_CONFIG"]
    if fault.get("untrusted_ca"):
        client["ssl.ca.location"] = str(CertificateAuthority(tmp_path / "other-ca").certificate_path)
    if fault.get("no_client_certificate"):
        del client["ssl.certificate.location"], client["ssl.key.location"]
    return settings


@pytest.mark.parametrize(("method", "fault", "reason"), REFUSALS, ids=["wrong-plain", "wrong-scram", "untrusted-ca",
                                                                    "no-client-cert"])
def test_refused_connection__worker_exits_2_at_once_with_one_clear_line(secure_kafka, tmp_path, method, fault, reason):
    """consume_events and relay_outbox stop within seconds with status 2 and one 'Kafka refused' line, no flood."""
    settings = refused_settings(secure_kafka, tmp_path, method, fault)
    assert manage(settings, "migrate", "-v", "0", tmp_path=tmp_path).returncode == 0
    for argv in (["consume_events", "-t", "refused-topic", "-g", "refused-group"], ["relay_outbox"]):
        started = time.monotonic()
        result = manage(settings, *argv, tmp_path=tmp_path, timeout=60)
        took = time.monotonic() - started
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert took < 20, f"{argv[0]} took {took:.1f} s to give up"
        (line,) = error_lines(output)
        assert reason in line, line
        assert "Traceback" not in output
        assert len(output.splitlines()) < 15, output


@pytest.mark.parametrize(("method", "fault", "reason"), REFUSALS, ids=["wrong-plain", "wrong-scram", "untrusted-ca",
                                                                    "no-client-cert"])
def test_refused_connection__commands_fail_fast_with_one_clear_line(secure_kafka, tmp_path, method, fault, reason):
    """produce_event, create_event_bus_topics, event_bus_status and the health probe exit 1 fast, naming the refusal."""
    settings = refused_settings(secure_kafka, tmp_path, method, fault)
    heartbeat = tmp_path / "worker.alive"
    Heartbeat(str(heartbeat), "test worker").beat(force=True)  # fresh: only the broker check can fail
    commands = [produce_event_args("refused-topic"),
                ["create_event_bus_topics", "--topic", "refused-topic", "--timeout", "30"],
                ["event_bus_status", "-t", "refused-topic", "-g", "refused-group", "--no-outbox"],
                ["event_bus_health", "--heartbeat-file", str(heartbeat), "--max-age", "600", "--check-broker"]]
    for argv in commands:
        started = time.monotonic()
        result = manage(settings, *argv, tmp_path=tmp_path, timeout=60)
        took = time.monotonic() - started
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert took < 15, f"{argv[0]} took {took:.1f} s to give up"
        assert reason in output, output
        assert "Traceback" not in output


def test_broker_logs_hold_no_password(secure_kafka):
    """After the tests above, nothing the broker logged or was formatted with shows a password."""
    assert secure_kafka.workdir is not None
    for name in ("server.log", "stdout.log", "format.log"):
        path = secure_kafka.workdir / name
        if path.exists():
            assert_no_password(path.read_text(encoding="utf-8", errors="replace"))
