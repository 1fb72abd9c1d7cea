"""A real Apache Kafka 4.x broker for tests: single-node KRaft, on free loopback ports, no Docker.

The broker's jars come from Maven Central through the ``apache-kafka-pom.xml`` shipped beside this
module (``dependency:copy-dependencies`` into a cache folder, once; see :func:`ensure_kafka_jars`),
or from any folder of Kafka jars, such as a binary distribution's ``libs/``. It needs Java 17 or
newer. Each broker formats fresh storage in a temporary folder (``kafka.tools.StorageTool format``),
runs ``kafka.Kafka`` with a small heap, writes its log to a file (:meth:`log_tail`), and dies with
the process that started it.

Besides the plaintext listener it can open, on request, the listeners production brokers use:
SASL/SCRAM over plaintext, SASL/PLAIN over TLS (what the reference's ``EVENT_BUS_KAFKA_API_KEY`` /
``_SECRET`` settings speak) and mutual TLS, with a throw-away certificate authority.

Run ``python -m edx_event_bus_kafka.testing.apache_kafka fetch`` to fetch the jars ahead of time.
"""
from __future__ import annotations

import atexit
import base64
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from edx_event_bus_kafka.internal.errors import EmbeddedBrokerError

from .brokers import KafkaTestBroker, die_with_parent, folder_lock, free_loopback_port, stop_process, wait_for
from .tls import CertificateAuthority, CertificateFiles

logger = logging.getLogger(__name__)

#: The Kafka release fetched by default (``EVENT_BUS_TEST_KAFKA_VERSION`` picks another): the
#: newest 4.x release, which still runs on Java 17.
KAFKA_VERSION = os.environ.get("EVENT_BUS_TEST_KAFKA_VERSION") or "4.4.0"
#: The log4j release whose SLF4J binding is added (the one Kafka's own log4j-core dependency has).
LOG4J_VERSION = "2.25.5"
#: The Maven file listing the broker's artifacts.
POM = Path(__file__).with_name("apache-kafka-pom.xml")
#: Where the jars are looked for (and fetched to) unless a folder is given.
JARS_ENV = "EVENT_BUS_TEST_KAFKA_JARS"

#: Broker settings for a fast, single-node test broker: one replica of everything, small internal
#: topics, short group timeouts (so killed members leave quickly), no initial rebalance delay.
TEST_BROKER_PROPERTIES: dict[str, str] = {
    "num.partitions": "1",
    "default.replication.factor": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
    # classic protocol: the clients' session.timeout.ms of 2 s must be allowed
    "group.min.session.timeout.ms": "1000",
    # consumer protocol (KIP-848): session and heartbeat times are set by the broker
    "group.consumer.min.session.timeout.ms": "1000",
    "group.consumer.session.timeout.ms": "3000",
    "group.consumer.min.heartbeat.interval.ms": "100",
    "group.consumer.heartbeat.interval.ms": "500",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": str(2 * 1024 * 1024),  # must exceed 1 MiB per cleaner thread
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "log.index.size.max.bytes": str(1024 * 1024),
}

#: JVM options: a small heap; the log4j configuration is added per broker.
JVM_OPTIONS = ["-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]
#: Added for a quick start (measured here: 2.0 s instead of 2.4 s, 155 MB instead of 180 MB RSS) at
#: the cost of peak throughput; benchmarks turn it off.
QUICK_START_JVM_OPTIONS = ["-XX:TieredStopAtLevel=1"]

# Listener names in server.properties -> their security protocol.
_SECURITY_LISTENERS = {"SCRAM": "SASL_PLAINTEXT", "SASLSSL": "SASL_SSL", "MTLS": "SSL"}
_SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


def default_jars_dir(version: str = KAFKA_VERSION) -> Path:
    """``$EVENT_BUS_TEST_KAFKA_JARS``, else a per-version folder in the user's cache."""
    configured = os.environ.get(JARS_ENV)
    if configured:
        return Path(configured).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "edx-event-bus-kafka" / f"apache-kafka-{version}"


def _has_kafka_jars(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("kafka_2.13-*.jar")) and any(folder.glob("kafka-clients-*.jar"))


def ensure_kafka_jars(folder: Path | None = None, *, version: str = KAFKA_VERSION,
                      log4j_version: str = LOG4J_VERSION) -> Path:
    """The folder of the broker's jars, fetched from Maven Central with ``mvn`` if it is missing.

    Raises:
        EmbeddedBrokerError: the jars are missing and Maven is not installed or failed.

    """
    folder = Path(folder) if folder is not None else default_jars_dir(version)
    if _has_kafka_jars(folder):
        return folder
    with folder_lock(folder):
        if _has_kafka_jars(folder):
            return folder
        maven = shutil.which("mvn")
        if maven is None:
            raise EmbeddedBrokerError(
                f"the Apache Kafka test broker needs its jars in {folder}: install Maven (mvn) so they can be "
                f"fetched from Maven Central, or set {JARS_ENV} to a folder of Kafka {version} jars "
                "(for example a Kafka distribution's libs/)"
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        command = [
            maven, "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}", f"-Dlog4j.version={log4j_version}",
            "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
        ]
        print(f"[apache-kafka] fetching Kafka {version} jars from Maven Central into {folder}", file=sys.stderr)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not _has_kafka_jars(staging):
            shutil.rmtree(staging, ignore_errors=True)
            output = (result.stdout + result.stderr).strip().splitlines()[-20:]
            raise EmbeddedBrokerError(
                f"could not fetch Kafka {version} with Maven (exit {result.returncode}):\n" + "\n".join(output)
            )
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return folder


def find_java(java_home: str | os.PathLike[str] | None = None) -> str:
    """The ``java`` executable: ``java_home``, else ``$JAVA_HOME``, else the one on ``PATH``."""
    home = java_home or os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise EmbeddedBrokerError(
            "the Apache Kafka test broker needs Java 17 or newer: set JAVA_HOME or put java on PATH"
        )
    return found


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


class ApacheKafkaBroker(KafkaTestBroker):
    """A single-node KRaft Apache Kafka broker (combined broker and controller) on loopback.

    ``scram_users`` ({name: password}) opens a SASL_PLAINTEXT listener with SCRAM-SHA-512 and -256,
    users created at format time. ``plain_users`` opens a SASL_SSL listener with PLAIN, and ``tls``
    an SSL listener that requires client certificates; both use :attr:`certificate_authority`.
    ``properties`` adds or overrides broker settings; ``quick_start=False`` gives the JVM its full
    JIT compiler (for benchmarks).
    ``stop()`` and ``restart()`` keep the data and ports (a later ``start()`` resumes); ``close()``
    deletes the storage.
    """

    kind = "apache"
    keeps_data_on_restart = True

    def __init__(
        self, port: int | None = None, *, host: str = "127.0.0.1", startup_timeout: float = 60.0,
        jars_dir: str | os.PathLike[str] | None = None, java_home: str | os.PathLike[str] | None = None,
        scram_users: Mapping[str, str] | None = None, plain_users: Mapping[str, str] | None = None,
        tls: bool = False, properties: Mapping[str, str] | None = None, stop_timeout: float = 20.0,
        quick_start: bool = True,
    ):
        super().__init__(host=host, port=port, startup_timeout=startup_timeout)
        self.jars_dir = Path(jars_dir) if jars_dir is not None else None
        self.java_home = java_home
        self.scram_users = dict(scram_users or {})
        self.plain_users = dict(plain_users or {})
        self.tls = tls
        self.extra_properties = dict(properties or {})
        self.stop_timeout = stop_timeout
        self.quick_start = quick_start
        self._port_given = port is not None
        self.workdir: Path | None = None
        self.certificate_authority: CertificateAuthority | None = None
        self._broker_certificate: CertificateFiles | None = None
        self._ports: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None

    # -- addresses -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def listener(self, security_protocol: str) -> str:
        """``host:port`` of the listener speaking ``security_protocol`` (SASL_PLAINTEXT, SASL_SSL, SSL)."""
        for name, protocol in _SECURITY_LISTENERS.items():
            if protocol == security_protocol and name in self._ports:
                return f"{self.host}:{self._ports[name]}"
        raise EmbeddedBrokerError(f"this broker has no {security_protocol} listener (see the constructor's options)")

    @property
    def ca_file(self) -> Path:
        """The PEM file of the CA that signed the broker's certificate (for ``ssl.ca.location``)."""
        if self.certificate_authority is None:
            raise EmbeddedBrokerError("this broker has no TLS listener")
        return self.certificate_authority.certificate_path

    def client_certificate(self, name: str = "client") -> CertificateFiles:
        """A client certificate signed by the broker's CA (for the mutual-TLS listener)."""
        if self.certificate_authority is None:
            raise EmbeddedBrokerError("this broker has no TLS listener")
        return self.certificate_authority.issue(name, server=False)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Format storage (first start only), start the broker and wait until it serves metadata."""
        if self.running:
            return self
        jars = ensure_kafka_jars(self.jars_dir)
        java = find_java(self.java_home)
        first_start = self.workdir is None
        if first_start:
            self._prepare(java, jars)
        assert self.workdir is not None
        started = time.monotonic()
        log = open(self.workdir / "stdout.log", "ab")
        try:
            self._process = subprocess.Popen(
                [java, *self._jvm_options(), "-cp", str(jars / "*"), "kafka.Kafka",
                 str(self.workdir / "server.properties")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                preexec_fn=die_with_parent,  # noqa: PLW1509 -- only prctl
            )
        finally:
            log.close()
        atexit.register(self._cleanup)
        try:
            wait_for(self._ready, timeout=self.startup_timeout, interval=0.05,
                     what=f"Apache Kafka on {self.bootstrap_servers}")
        except (TimeoutError, EmbeddedBrokerError) as error:
            self._stop_process(kill=True)
            raise EmbeddedBrokerError(f"{error}; broker log:\n{self.log_tail()}") from error
        self.startup_seconds = time.monotonic() - started
        logger.info("Apache Kafka ready on %s in %.2f s", self.bootstrap_servers, self.startup_seconds)
        return self

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then a kill after ``stop_timeout``. Its storage and ports are kept."""
        self._stop_process()

    def close(self) -> None:
        """Stop the broker and delete its storage (also done at interpreter exit)."""
        self._cleanup()

    def kill(self) -> None:
        """Kill the broker with SIGKILL, as a crash would; ``start()`` recovers its data."""
        self._stop_process(kill=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log and of the JVM's own output."""
        if self.workdir is None:
            return ""
        tails = []
        for name in ("server.log", "stdout.log"):
            try:
                text = (self.workdir / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if text.strip():
                tails.append(f"--- {name} ---\n" + "".join(text.splitlines(keepends=True)[-lines:]))
        return "\n".join(tails)

    # -- internals -----------------------------------------------------------------------------

    def _ready(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            code = None if self._process is None else self._process.returncode
            raise EmbeddedBrokerError(f"the Kafka process exited with status {code}")
        return self.answers_metadata()

    def _jvm_options(self) -> list[str]:
        assert self.workdir is not None
        quick = QUICK_START_JVM_OPTIONS if self.quick_start else []
        return [*JVM_OPTIONS, *quick, f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.workdir}"]

    def _prepare(self, java: str, jars: Path) -> None:
        """Pick ports, write the configuration and TLS material, and format the storage."""
        self.workdir = Path(tempfile.mkdtemp(prefix="apache-kafka-"))
        self.port = self.port or free_loopback_port()
        self._ports = {"PLAINTEXT": self.port, "CONTROLLER": free_loopback_port()}
        if self.scram_users:
            self._ports["SCRAM"] = free_loopback_port()
        if self.plain_users:
            self._ports["SASLSSL"] = free_loopback_port()
        if self.tls:
            self._ports["MTLS"] = free_loopback_port()
        if self.plain_users or self.tls:
            self.certificate_authority = CertificateAuthority(self.workdir / "tls")
            self._broker_certificate = self.certificate_authority.issue("broker", server=True)
        (self.workdir / "server.properties").write_text(self._server_properties(), encoding="utf-8")
        (self.workdir / "server.properties").chmod(0o600)  # it holds the PLAIN users' passwords
        (self.workdir / "log4j2.properties").write_text(self._log4j_properties(), encoding="utf-8")
        command = [java, *self._jvm_options(), "-cp", str(jars / "*"), "kafka.tools.StorageTool", "format",
                   f"--cluster-id={new_cluster_id()}", "--config", str(self.workdir / "server.properties")]
        for name, password in self.scram_users.items():
            for mechanism in _SCRAM_MECHANISMS:
                command += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=self.workdir)
        output = result.stdout + result.stderr
        for password in self.scram_users.values():
            output = output.replace(password, "********")  # an error may echo the command line
        (self.workdir / "format.log").write_text(output, encoding="utf-8")
        if result.returncode != 0:
            tail = "".join(output.splitlines(keepends=True)[-15:])
            raise EmbeddedBrokerError(f"kafka.tools.StorageTool format failed with status {result.returncode}:\n{tail}")

    def _server_properties(self) -> str:
        assert self.workdir is not None
        listeners = {name: f"{name}://{self.host}:{port}" for name, port in self._ports.items()}
        protocols = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT", **_SECURITY_LISTENERS}
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self._ports['CONTROLLER']}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": ",".join(listeners.values()),
            "advertised.listeners": ",".join(url for name, url in listeners.items() if name != "CONTROLLER"),
            "listener.security.protocol.map": ",".join(f"{name}:{protocols[name]}" for name in listeners),
            "log.dirs": str(self.workdir / "data"),
            **TEST_BROKER_PROPERTIES,
        }
        if self.scram_users:
            properties["listener.name.scram.sasl.enabled.mechanisms"] = ",".join(_SCRAM_MECHANISMS)
            for mechanism in _SCRAM_MECHANISMS:
                properties[f"listener.name.scram.{mechanism.lower()}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        if self.plain_users:
            users = " ".join(f'user_{name}="{password}"' for name, password in self.plain_users.items())
            properties["listener.name.saslssl.sasl.enabled.mechanisms"] = "PLAIN"
            properties["listener.name.saslssl.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
            )
        if self._broker_certificate is not None:
            assert self.certificate_authority is not None
            properties.update({
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self._broker_certificate.keystore),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.certificate_authority.certificate_path),
            })
        if self.tls:
            properties["listener.name.mtls.ssl.client.auth"] = "required"
        properties.update(self.extra_properties)
        return "".join(f"{key}={value}\n" for key, value in properties.items())

    def _log4j_properties(self) -> str:
        assert self.workdir is not None
        lines = {
            "status": "warn",
            "appender.file.type": "File",
            "appender.file.name": "FILE",
            "appender.file.fileName": str(self.workdir / "server.log"),
            "appender.file.layout.type": "PatternLayout",
            "appender.file.layout.pattern": "[%d] %p %m (%c)%n",
            "rootLogger.level": "WARN",
            "rootLogger.appenderRef.file.ref": "FILE",
            # One INFO line when the server is up, so the log shows how long the start took.
            "logger.started.name": "kafka.server.KafkaRaftServer",
            "logger.started.level": "INFO",
        }
        return "".join(f"{key} = {value}\n" for key, value in lines.items())

    def _stop_process(self, *, kill: bool = False) -> None:
        process, self._process = self._process, None
        if kill and process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        stop_process(process, timeout=self.stop_timeout, what="Apache Kafka")

    def _cleanup(self) -> None:
        self._stop_process()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self.certificate_authority = None
            self._broker_certificate = None
            self._ports = {}
            if not self._port_given:
                self.port = None


def main(argv: list[str] | None = None) -> int:
    """``python -m edx_event_bus_kafka.testing.apache_kafka fetch [FOLDER]``: fetch the jars, print the folder."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "fetch" or len(args) > 2:
        print("usage: python -m edx_event_bus_kafka.testing.apache_kafka fetch [FOLDER]", file=sys.stderr)
        return 2
    try:
        print(ensure_kafka_jars(Path(args[1]) if len(args) == 2 else None))
    except EmbeddedBrokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
