"""When a long-lived producer counts as stuck: passes that deliver nothing while the broker answers."""
from __future__ import annotations

from edx_event_bus_kafka.internal.kafka.recovery import StuckClient, broker_answers


def test_three_empty_passes_with_the_broker_answering_mean_stuck():
    stuck = StuckClient(passes=3)
    for _ in range(2):
        stuck.passed(attempted=20, delivered=0)
        assert not stuck.suspect()
    stuck.passed(attempted=20, delivered=0)
    assert stuck.suspect()
    assert stuck.reason(broker_answers=True) == "3 passes in a row delivered nothing although the broker answers"


def test_an_outage_is_not_stuck_and_the_count_starts_again():
    stuck = StuckClient(passes=3)
    for _ in range(3):
        stuck.passed(attempted=5, delivered=0)
    assert stuck.reason(broker_answers=False) is None
    assert not stuck.suspect()


def test_any_delivery_or_an_idle_pass_resets_the_streak():
    stuck = StuckClient(passes=2)
    stuck.passed(attempted=5, delivered=0)
    stuck.passed(attempted=5, delivered=1)
    stuck.passed(attempted=5, delivered=0)
    stuck.passed(attempted=0, delivered=0)  # nothing to deliver (e.g. the registry is down): no evidence
    stuck.passed(attempted=5, delivered=0)
    assert not stuck.suspect()


def test_a_fatal_error_is_stuck_at_once_and_reset_forgets_it():
    stuck = StuckClient()
    stuck.fatal("KafkaError{code=_FATAL}")
    assert stuck.suspect() and stuck.reason(broker_answers=True) == "fatal error KafkaError{code=_FATAL}"
    stuck.reset()
    assert not stuck.suspect()


def test_broker_answers_is_false_when_the_metadata_request_fails():
    class Unreachable:
        def list_topics(self, timeout: float) -> None:
            raise RuntimeError("no broker")

    class Reachable:
        def list_topics(self, timeout: float) -> dict:
            return {}

    assert broker_answers(Unreachable(), 1) is False
    assert broker_answers(Reachable(), 1) is True


class FatalOnPoll:
    """A producer whose client hit a fatal error: confluent-kafka raises it from ``poll``."""

    def __init__(self) -> None:
        self.purged = False

    def poll(self, timeout: float) -> int:
        from confluent_kafka import KafkaError, KafkaException

        raise KafkaException(KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "sequence desynchronization",
                                        fatal=True))

    def list_topics(self, timeout: float) -> dict:
        return {}

    def purge(self) -> None:
        self.purged = True

    def flush(self, timeout: float) -> int:
        return 0


def test_outbox_publisher_replaces_a_client_that_raised_a_fatal_error_from_poll(settings, caplog):
    """The relay's client is replaced (logged once, with the reason) instead of the relay dying of a traceback."""
    from edx_event_bus_kafka.internal.outbox.publisher import OutboxPublisher

    settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:1"  # never contacted: the client is replaced first
    publisher = OutboxPublisher()
    stuck = publisher._producer._client = FatalOnPoll()  # poll raises, as such a client does
    assert publisher._poll(0) is False
    publisher._rebuild_if_stuck()
    assert stuck.purged and publisher.producer is not stuck
    (line,) = [r.getMessage() for r in caplog.records if "replacing the Kafka client" in r.getMessage()]
    assert "fatal error" in line and "OUT_OF_ORDER_SEQUENCE_NUMBER" in line
    publisher.close()


class AnsweringProducer:
    """A client whose broker answers metadata requests: an empty pass with it would count as stuck."""

    def list_topics(self, timeout: float) -> dict:
        return {}

    def purge(self) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0


class AnsweringFactory:
    def __init__(self) -> None:
        self.made = 0

    def producer(self, config: dict) -> AnsweringProducer:
        self.made += 1
        return AnsweringProducer()


def test_a_client_replaced_on_use_after_a_fatal_error_is_not_blamed_for_the_old_clients_empty_passes(caplog):
    """Seen in CI: a fatal error replaced the client mid-pass, and that pass's failures replaced the new one too."""
    from edx_event_bus_kafka.internal.kafka.clients import ProducerHandle, clients_from

    with clients_from(AnsweringFactory()) as factory:
        handle = ProducerHandle({}, name="outbox publisher")
        stuck = StuckClient(passes=3)
        stuck.passed(attempted=10, delivered=0)
        stuck.passed(attempted=10, delivered=0)
        handle.fatal_raised("KafkaError{FATAL,code=UNKNOWN_PRODUCER_ID}")
        assert handle.client is not None  # replaced on use, in the middle of the pass
        stuck.passed(attempted=10, delivered=0)  # that pass's rows failed with the old client
        assert handle.replace_if_stuck(stuck) is False
        assert factory.made == 2
        for _ in range(3):  # the new client, if it too delivers nothing, is still replaced
            stuck.passed(attempted=10, delivered=0)
        assert handle.replace_if_stuck(stuck) is True
        assert factory.made == 3
    lines = [r.getMessage() for r in caplog.records if "replacing the Kafka client" in r.getMessage()]
    assert len(lines) == 2 and "fatal error" in lines[0] and "passes in a row" in lines[1]
