"""When a lost broker counts as reachable again: the brokers librdkafka's errors named, up in its statistics."""
from __future__ import annotations

import json
import logging

import pytest
from confluent_kafka import KafkaError

from edx_event_bus_kafka.internal.kafka.reachability import STATS_INTERVAL_MS, BrokerWatch
from edx_event_bus_kafka.internal.runtime import log_repeats


@pytest.fixture(autouse=True)
def fresh_repeats(monkeypatch):
    monkeypatch.setattr(log_repeats, "_TRANSIENT", log_repeats.RepeatFilter())


def transport(broker: str) -> KafkaError:
    address = broker.rsplit("/", 1)[0]
    return KafkaError(KafkaError._TRANSPORT, f"{broker}: Connect to ipv4#{address} failed: Connection refused")


def report(**states: str) -> str:
    return json.dumps({"brokers": {name: {"name": name, "state": state} for name, state in states.items()}})


def back_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]


def test_a_lost_broker_seen_up_again_is_logged_once(caplog):
    watch = BrokerWatch(logging.getLogger("test.watch"), "consumer")
    watch.error(transport("10.0.0.1:9092/1"))
    watch.statistics(report(**{"10.0.0.1:9092/1": "CONNECT"}))
    assert watch.lost == ["10.0.0.1:9092"] and back_lines(caplog) == []
    watch.statistics(report(**{"10.0.0.1:9092/1": "UP"}))
    watch.statistics(report(**{"10.0.0.1:9092/1": "UP"}))
    (line,) = back_lines(caplog)
    assert line.startswith("Kafka consumer: broker 10.0.0.1:9092 is reachable again after ")
    assert watch.lost == []


def test_a_broker_lost_by_its_bootstrap_name_is_back_under_its_id_and_a_protocol_prefix_is_kept(caplog):
    watch = BrokerWatch(logging.getLogger("test.watch"), "producer")
    watch.error(transport("sasl_ssl://b-1.example:9096/bootstrap"))
    watch.statistics(report(**{"sasl_ssl://b-1.example:9096/1": "UP"}))
    (line,) = back_lines(caplog)
    assert "broker sasl_ssl://b-1.example:9096 is reachable again" in line


def test_all_brokers_down_ends_with_the_first_broker_up_in_one_line_with_the_named_ones(caplog):
    watch = BrokerWatch(logging.getLogger("test.watch"), "outbox publisher")
    watch.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "2/2 brokers are down"))
    watch.error(transport("10.0.0.1:9092/1"))
    watch.statistics(report(**{"10.0.0.1:9092/1": "UP", "10.0.0.2:9092/2": "DOWN"}))
    (line,) = back_lines(caplog)  # one line, not one for "every broker" and one for the named one
    assert line.startswith("Kafka outbox publisher: broker 10.0.0.1:9092 is reachable again after ")


def test_only_unreachable_errors_count_and_a_broker_still_down_is_not_back(caplog):
    watch = BrokerWatch(logging.getLogger("test.watch"), "consumer")
    watch.error(KafkaError(KafkaError._AUTHENTICATION, "10.0.0.1:9092/1: SASL authentication failed"))
    watch.error(KafkaError(KafkaError._MSG_TIMED_OUT, "message timed out"))
    assert watch.lost == []
    watch.error(transport("10.0.0.1:9092/1"))
    watch.statistics(report(**{"10.0.0.2:9092/2": "UP", "10.0.0.1:9092/1": "TRY_CONNECT"}))
    assert back_lines(caplog) == [] and watch.lost == ["10.0.0.1:9092"]


def test_statistics_are_not_read_while_nothing_is_lost():
    watch = BrokerWatch(logging.getLogger("test.watch"), "consumer")
    watch.statistics("not json: nothing was lost, so nothing parses it")
    watch.error(transport("10.0.0.1:9092/1"))
    watch.statistics("{not json")  # unreadable while something is lost: ignored, still lost
    assert watch.lost == ["10.0.0.1:9092"]


def test_configure_adds_statistics_and_still_calls_the_operators_own_stats_cb():
    seen: list[str] = []
    watch = BrokerWatch(logging.getLogger("test.watch"), "consumer")
    config = watch.configure({"bootstrap.servers": "x:9092"})
    assert config["statistics.interval.ms"] == STATS_INTERVAL_MS and callable(config["stats_cb"])
    theirs = watch.configure({"statistics.interval.ms": 60000, "stats_cb": seen.append})
    assert theirs["statistics.interval.ms"] == 60000
    theirs["stats_cb"](report(**{"a:1/1": "UP"}))
    assert seen == [report(**{"a:1/1": "UP"})]
