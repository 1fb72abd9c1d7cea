"""Telling a broker that refuses our credentials or TLS setup from one that is out of reach."""
from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError

from edx_event_bus_kafka.internal.errors import BrokerRefusedError
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch, refusal

# The texts are librdkafka 2.16's, as seen against Apache Kafka 4.4 listeners (test_security.py).
AUTH = KafkaError(KafkaError._AUTHENTICATION, "sasl_ssl://127.0.0.1:41687/bootstrap: SASL authentication error: "
                  "Authentication failed: Invalid username or password (after 302ms in state AUTH_REQ)")
UNTRUSTED = KafkaError(KafkaError._SSL, "sasl_ssl://127.0.0.1:41687/bootstrap: SSL handshake failed: error:0A000086:"
                       "SSL routines::certificate verify failed: broker certificate could not be verified")
NO_CLIENT_CERT = KafkaError(KafkaError._TRANSPORT, "ssl://127.0.0.1:48373/bootstrap: Receive failed: error:0A000412:"
                            "SSL routines::ssl/tls alert bad certificate: SSL alert number 42 (after 0ms in state A)")
UNREACHABLE = KafkaError(KafkaError._TRANSPORT, "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: "
                         "Connection refused (after 0ms in state CONNECT)")
ALL_DOWN = KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")


@pytest.mark.parametrize(("error", "start", "hint"), [
    (AUTH, "authentication failed", "EVENT_BUS_KAFKA_API_SECRET"),
    (UNTRUSTED, "TLS handshake failed", "ssl.ca.location"),
    (NO_CLIENT_CERT, "TLS handshake failed", "ssl.certificate.location"),
])
def test_refusals_are_named_with_the_settings_to_check(error, start, hint):
    """Authentication and TLS failures read as one line that says what to check."""
    reason = refusal(error)
    assert reason is not None and reason.startswith(start) and hint in reason and "\\n" not in reason


@pytest.mark.parametrize("error", [UNREACHABLE, ALL_DOWN, KafkaError(KafkaError._MSG_TIMED_OUT)])
def test_unreachable_brokers_and_other_errors_are_not_refusals(error):
    """An unreachable broker may come back by itself: that is not a refusal."""
    assert refusal(error) is None


def test_watch_logs_the_first_refusal_then_at_most_once_per_period(caplog):
    """Forty refusals in a row log one line; check() then raises with the first reason."""
    caplog.set_level(logging.ERROR, logger="edx_event_bus_kafka")
    watch = RefusalWatch("test client", repeat_every_sec=3600)
    assert not watch.seen(UNREACHABLE)
    assert all(watch.seen(AUTH) for _ in range(40))
    assert [r.getMessage() for r in caplog.records if "Kafka refused" in r.getMessage()] == [
        f"Kafka refused the test client: {refusal(AUTH)}"
    ]
    assert watch.count == 40
    with pytest.raises(BrokerRefusedError, match="Kafka refused the test client: authentication failed"):
        watch.check()


def test_watch_repeats_itself_after_the_period(caplog):
    """With a zero period every refusal is logged again, with a running count."""
    caplog.set_level(logging.ERROR, logger="edx_event_bus_kafka")
    watch = RefusalWatch("test client", repeat_every_sec=0)
    watch.seen(AUTH)
    watch.seen(AUTH)
    messages = [r.getMessage() for r in caplog.records if "Kafka refused" in r.getMessage()]
    assert len(messages) == 2 and messages[1].endswith("(refused 2 times so far)")
