"""What every test broker does, whichever Kafka runs behind it.

:class:`KafkaTestBroker` is the one interface the test suite, the demo, the benchmarks and our
users' tests program against: start, bootstrap servers, create topics, stop, restart on the same
port. :func:`make_test_broker` picks an implementation by name (``tansu`` or ``apache``), which is
how ``pytest --kafka-broker`` and ``EVENT_BUS_TEST_KAFKA_BROKER`` choose one.
"""
from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from edx_event_bus_kafka.internal.errors import EmbeddedBrokerError

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: The broker kinds :func:`make_test_broker` knows.
BROKER_KINDS = ("tansu", "apache")

#: The consumer group protocols a test consumer can use (KIP-848 added ``consumer``).
GROUP_PROTOCOLS = ("classic", "consumer")

#: Environment variables that choose the broker and group protocol (also read by subprocesses).
BROKER_ENV = "EVENT_BUS_TEST_KAFKA_BROKER"
GROUP_PROTOCOL_ENV = "EVENT_BUS_TEST_GROUP_PROTOCOL"

#: Consumer options that make group joins take about a second on the embedded Tansu broker (its
#: JoinGroup waits about max(1 s, session.timeout.ms / 2)) and deliver fetched data within ~10 ms.
FAST_CONSUMER_CONFIG: dict[str, Any] = {
    "session.timeout.ms": 2000,
    "heartbeat.interval.ms": 500,
    "fetch.wait.max.ms": 10,
}


def wait_for(condition: Callable[[], T], *, timeout: float, interval: float = 0.02, what: str = "condition") -> T:
    """Call ``condition()`` until it returns a truthy value; raise ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """In a child process: ask Linux to SIGTERM it when the process that started it dies.

    Linux ties this to the *thread* that started the child: start brokers from the main thread (or
    a thread that outlives them), or they stop when that thread ends.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:  # not Linux: rely on atexit and stop()
        pass


def stop_process(process: subprocess.Popen[Any] | None, *, timeout: float, what: str = "the process",
                 warn: bool = True) -> None:
    """SIGTERM ``process``, wait up to ``timeout`` s, then kill it (``warn``: say so); nothing if it has exited."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        if warn:
            logger.warning("%s did not stop within %.0f s of SIGTERM; killing it", what, timeout)
    process.kill()
    process.wait(timeout=10)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Only one process at a time fills ``folder`` (parallel test runs share downloads)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fast_consumer_config(kind: str | None = None, group_protocol: str | None = None) -> dict[str, Any]:
    """Consumer options for quick group joins and deliveries in tests on a broker of ``kind``.

    ``kind`` and ``group_protocol`` default to the chosen ones (:func:`selected_broker_kind`,
    :func:`selected_group_protocol`). With the KIP-848 ``consumer`` protocol the session and
    heartbeat times are the broker's (the client refuses them), so the test broker sets them short.
    """
    kind = kind or selected_broker_kind()
    group_protocol = group_protocol or selected_group_protocol()
    if kind not in BROKER_KINDS:
        raise EmbeddedBrokerError(f"unknown test broker {kind!r}; choose one of {', '.join(BROKER_KINDS)}")
    if group_protocol not in GROUP_PROTOCOLS:
        raise EmbeddedBrokerError(
            f"unknown group protocol {group_protocol!r}; choose one of {', '.join(GROUP_PROTOCOLS)}"
        )
    if group_protocol == "consumer":
        return {"group.protocol": "consumer", "fetch.wait.max.ms": 10}
    # Tansu does not answer a fetch early when data arrives; Apache Kafka does, but a short
    # fetch wait also bounds how long a consumer waits for a partition it has just been given.
    return dict(FAST_CONSUMER_CONFIG)


class KafkaTestBroker(ABC):
    """A single Kafka broker on loopback for tests and local development.

    ``start()`` returns once the broker answers a metadata request; ``stop()`` ends it (a bounded
    wait, then a kill); ``restart()`` starts it again on the same port so connected clients
    reconnect; ``close()`` stops it for good and frees its storage. Brokers also stop when the
    interpreter exits or their parent process dies (or the thread that started them ends: start and
    restart them from the main thread). Whether data survives a stop differs: see
    :attr:`keeps_data_on_restart`.
    """

    #: The name :func:`make_test_broker` knows this broker by.
    kind: str = ""
    #: Whether topics and offsets survive ``restart()``.
    keeps_data_on_restart: bool = False

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None, startup_timeout: float = 30.0):
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None

    # -- what subclasses provide ---------------------------------------------------------------

    @property
    @abstractmethod
    def running(self) -> bool:
        """Whether the broker process is alive."""

    @abstractmethod
    def start(self) -> Self:
        """Start the broker (if it is not running) and wait until it serves metadata."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the broker process."""

    @abstractmethod
    def log_tail(self, lines: int = 40) -> str:
        """The last lines the broker logged, for error messages."""

    # -- shared behaviour ----------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of the plaintext listener, for ``EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS``."""
        if self.port is None:
            raise EmbeddedBrokerError("the broker has not been started")
        return f"{self.host}:{self.port}"

    def consumer_config(self, group_protocol: str | None = None) -> dict[str, Any]:
        """Options for quick joins and deliveries of test consumers on this broker.

        ``group_protocol`` defaults to ``EVENT_BUS_TEST_GROUP_PROTOCOL`` (or ``classic``).
        """
        return fast_consumer_config(self.kind, group_protocol)

    def restart(self) -> None:
        """Stop the broker and start it again on the same port(s)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker for good and free what it holds (storage, temporary files)."""
        self.stop()

    def admin(self, **config: Any) -> Any:
        """A confluent-kafka ``AdminClient`` connected to the plaintext listener.

        Always a real client, even where the package's clients are routed elsewhere (to the
        in-memory Kafka, say): this broker is real.
        """
        from edx_event_bus_kafka.internal.kafka.clients import CONFLUENT

        return CONFLUENT.admin({"bootstrap.servers": self.bootstrap_servers, "log_level": 0, **config})

    def create_topics(
        self, names: Iterable[str], *, partitions: int = 1, timeout: float = 10.0,
        config: dict[str, str] | None = None,
    ) -> None:
        """Create topics with their final partition count; existing topics are left as they are."""
        from confluent_kafka import KafkaError
        from confluent_kafka.admin import NewTopic

        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
            for name in names
        ]
        if not wanted:
            return
        admin = self.admin()  # keep a reference: a collected client cancels its pending requests
        futures = admin.create_topics(wanted, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
            except Exception as error:
                kafka_error = error.args[0] if error.args else None
                if getattr(kafka_error, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise EmbeddedBrokerError(f"could not create topic {name!r}: {error}") from error
        self._wait_for_leaders([topic.topic for topic in wanted], timeout)

    def _wait_for_leaders(self, names: list[str], timeout: float) -> None:
        """Wait until every partition of ``names`` has a leader, so a first produce does not fail."""
        admin = self.admin()

        def all_led() -> bool:
            metadata = admin.list_topics(timeout=timeout)
            for name in names:
                topic = metadata.topics.get(name)
                if topic is None or topic.error is not None or not topic.partitions:
                    return False
                if any(partition.leader < 0 for partition in topic.partitions.values()):
                    return False
            return True

        wait_for(all_led, timeout=timeout, interval=0.05, what=f"leaders for {', '.join(names)}")

    def answers_metadata(self) -> bool:
        """Whether a metadata request succeeds now (the readiness test)."""
        try:
            self.admin().list_topics(timeout=0.5)
        except Exception:  # noqa: BLE001 -- not ready yet: any client error means "try again"
            return False
        return True

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()


def selected_broker_kind() -> str:
    """The broker kind chosen by ``EVENT_BUS_TEST_KAFKA_BROKER`` (default ``tansu``)."""
    kind = os.environ.get(BROKER_ENV, "").strip().lower() or "tansu"
    if kind not in BROKER_KINDS:
        raise EmbeddedBrokerError(
            f"{BROKER_ENV}={kind!r} is not a test broker; choose one of {', '.join(BROKER_KINDS)}"
        )
    return kind


def selected_group_protocol() -> str:
    """The group protocol chosen by ``EVENT_BUS_TEST_GROUP_PROTOCOL`` (default ``classic``)."""
    protocol = os.environ.get(GROUP_PROTOCOL_ENV, "").strip().lower() or "classic"
    if protocol not in GROUP_PROTOCOLS:
        raise EmbeddedBrokerError(
            f"{GROUP_PROTOCOL_ENV}={protocol!r} is not a group protocol; choose one of {', '.join(GROUP_PROTOCOLS)}"
        )
    return protocol


def make_test_broker(kind: str | None = None, **options: Any) -> KafkaTestBroker:
    """A new, not yet started broker of ``kind`` (default: :func:`selected_broker_kind`)."""
    kind = kind or selected_broker_kind()
    if kind == "tansu":
        from .tansu import EmbeddedKafkaBroker

        return EmbeddedKafkaBroker(**options)
    if kind == "apache":
        from .apache_kafka import ApacheKafkaBroker

        return ApacheKafkaBroker(**options)
    raise EmbeddedBrokerError(f"unknown test broker {kind!r}; choose one of {', '.join(BROKER_KINDS)}")
