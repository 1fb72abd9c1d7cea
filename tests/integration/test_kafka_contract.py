"""The behaviours the in-memory Kafka copies, proved on the real broker of the run (Tansu or Apache Kafka)."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from edx_event_bus_kafka.testing import KafkaTestBroker
from tests.support.kafka_contract import APACHE_ONLY, CHECKS, RealSide, Side

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("check", [pytest.param(check, marks=[pytest.mark.apache_kafka] if check in APACHE_ONLY
                                                else [], id=check.__name__) for check in CHECKS])
def test_real_broker_behaves_as_the_contract_says(kafka_broker: KafkaTestBroker, check: Callable[[Side], None]):
    """The real broker and librdkafka do what the named contract check asserts (the in-memory Kafka does too)."""
    check(RealSide(kafka_broker))
