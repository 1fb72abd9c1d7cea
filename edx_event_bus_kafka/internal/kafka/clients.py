"""The only place Kafka clients are made, and the rules every producer of ours follows.

* **Construction**: :func:`new_producer`, :func:`new_consumer` and :func:`new_admin` build clients
  from a librdkafka configuration and an optional ``error_cb``, through the current
  :class:`~edx_event_bus_kafka.internal.kafka.protocols.ClientFactory`: confluent-kafka's by
  default, the in-memory Kafka inside :func:`clients_from` (see ``edx_event_bus_kafka.testing.memory``).
* **Replacement of a client that can no longer deliver**: a :class:`ProducerHandle` holds a
  producer client and replaces it once it had a fatal error (an idempotence sequence error after a
  broker loss, say), or once its deliveries all fail while its broker answers (``recovery``): such a
  client fails everything from then on, and the cure is a new client, not a crashed host process.
* **Produce and wait for the acknowledgements**: :func:`produce_and_wait`, for the writers that must
  know each message reached the broker before they go on (dead letters, redrive, the outbox).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from edx_event_bus_kafka.internal.kafka.protocols import (
    AdminClientLike,
    ClientFactory,
    ConsumerClient,
    ErrorCallback,
    HeaderList,
    ProducerClient,
)
from edx_event_bus_kafka.internal.kafka.reachability import BrokerWatch
from edx_event_bus_kafka.internal.kafka.recovery import StuckClient, broker_answers
from edx_event_bus_kafka.internal.kafka.refusals import RefusalWatch

logger = logging.getLogger(__name__)


class ConfluentKafka:
    """The factory of real clients: confluent-kafka's, talking to the brokers in the configuration."""

    def producer(self, config: dict[str, Any]) -> ProducerClient:
        """A ``confluent_kafka.Producer``."""
        from confluent_kafka import Producer

        return Producer(config)

    def consumer(self, config: dict[str, Any]) -> ConsumerClient:
        """A ``confluent_kafka.Consumer``."""
        from confluent_kafka import Consumer

        return Consumer(config)

    def admin(self, config: dict[str, Any]) -> AdminClientLike:
        """A ``confluent_kafka.admin.AdminClient``."""
        from confluent_kafka.admin import AdminClient

        return AdminClient(config)


#: Real clients, whatever factory is current: for code that must reach a real broker (test brokers).
CONFLUENT = ConfluentKafka()

_factory: ClientFactory = CONFLUENT
_factory_lock = threading.Lock()


@contextlib.contextmanager
def clients_from(factory: ClientFactory) -> Iterator[ClientFactory]:
    """Within the block, every client the package makes comes from ``factory`` (in every thread).

    Clients made before stay what they are. Blocks nest; leaving one restores the factory it replaced.
    """
    global _factory  # noqa: PLW0603 -- one factory per process: consumers run in other threads too
    with _factory_lock:
        previous, _factory = _factory, factory
    try:
        yield factory
    finally:
        with _factory_lock:
            _factory = previous


def current_factory() -> ClientFactory:
    """The factory clients come from now."""
    return _factory


def _with_error_cb(config: dict[str, Any], error_cb: ErrorCallback | None) -> dict[str, Any]:
    return config if error_cb is None else {**config, "error_cb": error_cb}


def new_producer(config: dict[str, Any], *, error_cb: ErrorCallback | None = None) -> ProducerClient:
    """A producer with ``config`` (librdkafka options) and ``error_cb`` for client-level errors."""
    return _factory.producer(_with_error_cb(config, error_cb))


def new_consumer(config: dict[str, Any], *, error_cb: ErrorCallback | None = None) -> ConsumerClient:
    """A consumer with ``config`` (``group.id`` included) and ``error_cb`` for client-level errors."""
    return _factory.consumer(_with_error_cb(config, error_cb))


def new_admin(config: dict[str, Any], *, error_cb: ErrorCallback | None = None) -> AdminClientLike:
    """An admin client with ``config`` and ``error_cb`` for client-level errors."""
    return _factory.admin(_with_error_cb(config, error_cb))


class ProducerHandle:
    """Holds a producer client, and replaces it by a new one once it can no longer deliver.

    Client-level errors go first to ``refusals`` (a broker refusing our credentials or TLS setup is
    logged sparingly there), then, when fatal, are remembered so that :attr:`client` builds a new
    client on next use, and otherwise go to ``on_error`` (librdkafka retries those by itself). A
    fatal error that ``poll`` raises instead is treated the same (see :meth:`poll`), and
    :meth:`replace_if_stuck` replaces a client whose deliveries all fail while its broker answers
    (see ``recovery``). Messages still queued in a replaced client fail their delivery reports, so
    their owners hear of them. A client given as ``client`` (the caller's own) is never replaced.
    """

    def __init__(self, config: dict[str, Any], *, name: str, refusals: RefusalWatch | None = None,
                 on_error: ErrorCallback | None = None, client: ProducerClient | None = None,
                 brokers: BrokerWatch | None = None):
        self.name = name
        self.refusals = refusals
        self.brokers = brokers
        self._config = brokers.configure(config) if brokers is not None else config
        self._on_error = on_error
        self._fatal: Any = None
        self._lock = threading.Lock()
        self._own = client is None
        #: How many times the client was replaced: a :class:`StuckClient` counts passes per client.
        self.generation = 0
        self._client = client if client is not None else new_producer(config, error_cb=self._client_error)

    def _client_error(self, error: Any) -> None:
        if self.brokers is not None:
            self.brokers.error(error)
        if self.refusals is not None and self.refusals.seen(error):
            return  # logged by the watch, not at every reconnect
        if error.fatal():
            logger.error("Fatal Kafka %s error, the client will be rebuilt: %s", self.name, error)
            self._fatal = error
        elif self._on_error is not None:
            self._on_error(error)

    @property
    def client(self) -> ProducerClient:
        """The current client, replaced first if the previous one had a fatal error."""
        if self._fatal is not None and self._own:
            self._replace(f"fatal error {self._fatal}", fatal=True)
        return self._client

    def poll(self, timeout: float) -> bool:
        """Serve the client's callbacks; False when it raised a fatal error (it is replaced on next use)."""
        try:
            self.client.poll(timeout)
        except Exception as error:
            cause = _fatal_cause(error)
            if cause is None:
                raise
            self.fatal_raised(cause)
            return False
        return True

    def fatal_raised(self, error: Any) -> None:
        """The client raised fatal ``error`` (from ``poll``) rather than reporting it: replace it on next use."""
        self._fatal = error

    def replace_if_stuck(self, stuck: StuckClient, *, probe_timeout: float = 5.0) -> bool:
        """Replace the client after a fatal error, or when ``stuck`` suspects it and its broker answers; True if done.

        An outage is not a stuck client (a new one would meet it just the same): the broker must answer
        a metadata request, within ``probe_timeout`` s, for a suspect client to be replaced.
        """
        if not self._own:
            return False
        if self._fatal is not None:
            self._replace(f"fatal error {self._fatal}", fatal=True)
            stuck.reset(self.generation)
            return True
        if stuck.client_generation != self.generation:
            stuck.reset(self.generation)  # replaced on use since the last look: its failures were the old client's
        if not stuck.suspect():
            return False
        reason = stuck.reason(broker_answers(self._client, probe_timeout))
        if reason is None:
            return False
        self._replace(reason, fatal=False)
        stuck.reset(self.generation)
        return True

    def _replace(self, reason: str, *, fatal: bool) -> None:
        with self._lock:
            if fatal and self._fatal is None:
                return  # another thread replaced it meanwhile
            logger.warning("Kafka %s: %s; replacing the Kafka client", self.name, reason)
            old, self._client = self._client, new_producer(self._config, error_cb=self._client_error)
            self._fatal = None
            self.generation += 1
        old.purge()
        try:
            old.flush(0)  # serves the failed delivery reports of what the dead client still held
        except Exception as error:
            if _fatal_cause(error) is None:
                raise


def _fatal_cause(error: BaseException) -> Any:
    """The fatal ``KafkaError`` a ``KafkaException`` carries, or None (any other exception too)."""
    from confluent_kafka import KafkaError, KafkaException

    cause = error.args[0] if isinstance(error, KafkaException) and error.args else None
    return cause if isinstance(cause, KafkaError) and cause.fatal() else None


@dataclass
class Outgoing:
    """One message to produce with :func:`produce_and_wait`."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: HeaderList


@dataclass
class Outcome:
    """What became of one :class:`Outgoing`: acknowledged, or why not."""

    settled: bool = False  # a delivery report came, or produce() refused the message
    error: Any = None  # the KafkaError of the delivery report, or the exception produce() raised
    reason: str = "not acknowledged"  # empty once delivered

    @property
    def delivered(self) -> bool:
        """Whether the broker acknowledged the message."""
        return self.settled and self.error is None

    def _report(self, error: Any, _message: Any) -> None:
        """The delivery-report callback of the message."""
        self.settled, self.error = True, error
        self.reason = "" if error is None else str(error)

    def _refused(self, error: BaseException, reason: str) -> None:
        self.settled, self.error, self.reason = True, error, reason


#: Longest single wait while delivery reports are outstanding, so that ``give_up`` is checked often.
WAIT_SLICE_SEC = 0.05


def produce_and_wait(producer: ProducerClient, messages: Sequence[Outgoing], timeout: float, *,
                     give_up: Callable[[], bool] | None = None,
                     on_fatal: Callable[[Any], object] | None = None) -> list[Outcome]:
    """Produce ``messages`` in order and wait until the broker acknowledged each, for ``timeout`` s at most.

    Returns one :class:`Outcome` per message, in order. A full local queue is waited out (delivery
    reports are served meanwhile); a message that ``produce`` refuses (too large, say) fails at once
    and the others still go. When time is up, or ``give_up()`` says so (the broker refuses us),
    messages not yet sent are withdrawn from the local queue so that they cannot arrive later;
    messages already in flight may still arrive. A fatal error that ``poll`` raises ends the wait and
    goes to ``on_fatal`` (a :class:`ProducerHandle`'s ``fatal_raised``, so that the client is replaced).
    """
    deadline = time.monotonic() + timeout
    outcomes = [Outcome() for _ in messages]
    poll = _Poller(producer, on_fatal)
    for message, outcome in zip(messages, outcomes, strict=True):
        _produce(poll, message, outcome, deadline, timeout)
    while any(not outcome.settled for outcome in outcomes) and not poll.dead:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (give_up is not None and give_up()):
            break
        poll(min(WAIT_SLICE_SEC, remaining))
    # Served even when produce() refused everything: a client in a fatal state says why only through
    # its error callback, which is what gets it rebuilt.
    poll(0)
    if any(not outcome.settled for outcome in outcomes):
        producer.purge(in_queue=True, in_flight=False)
        poll(0)  # serves the withdrawn messages' reports
        for outcome in outcomes:
            if not outcome.settled:
                outcome.reason = (f"not acknowledged: the Kafka client had a fatal error ({poll.dead})" if poll.dead
                                  else f"not acknowledged within {timeout} s (it may still arrive)")
            elif _withdrawn(outcome.error):
                outcome.reason = f"not acknowledged within {timeout} s (withdrawn before it was sent)"
    return outcomes


class _Poller:
    """``producer.poll``, until it raises a fatal error: then ``dead`` holds it and polling stops."""

    def __init__(self, producer: ProducerClient, on_fatal: Callable[[Any], object] | None):
        self.producer = producer
        self.on_fatal = on_fatal
        self.dead: Any = None

    def __call__(self, timeout: float) -> None:
        if self.dead is not None:
            return
        try:
            self.producer.poll(timeout)
        except Exception as error:
            cause = _fatal_cause(error)
            if cause is None:
                raise
            self.dead = cause
            if self.on_fatal is not None:
                self.on_fatal(cause)


def _produce(poll: _Poller, message: Outgoing, outcome: Outcome, deadline: float, timeout: float) -> None:
    producer = poll.producer
    while True:
        try:
            producer.produce(message.topic, key=message.key, value=message.value, headers=message.headers,
                             on_delivery=outcome._report)
            return
        except BufferError as error:  # local queue full: make room by serving reports, then try again
            if time.monotonic() >= deadline or poll.dead is not None:
                outcome._refused(error, f"the local queue was still full after {timeout} s")
                return
            poll(WAIT_SLICE_SEC)
        except Exception as error:  # noqa: BLE001 -- KafkaException and the like: this message cannot go
            outcome._refused(error, str(error))
            return


def _withdrawn(error: Any) -> bool:
    from confluent_kafka import KafkaError

    return isinstance(error, KafkaError) and error.code() == KafkaError._PURGE_QUEUE
