"""Apicurio Registry for tests: a second, independent implementation of the Confluent registry REST API.

It stands beside our own stand-in (``tests/support/schema_registry.py``). Apicurio Registry is the
Apicurio project's software (Apache-2.0), not ours and not Confluent's. Its Quarkus distribution,
``io.apicurio:apicurio-registry-app:VERSION:tar.gz:all``, is fetched from Maven Central with Maven
once (:func:`ensure_apicurio`) into ``.apicurio/`` in the repository (git-ignored;
``EVENT_BUS_TEST_APICURIO_DIR`` names another folder) and run with ``java -jar quarkus-run.jar`` on
free loopback ports, with its default in-memory H2 storage. It needs Java 21 or newer
(:func:`find_java`). Confluent clients use its ``/apis/ccompat/v7`` API, which
:attr:`ApicurioRegistry.url` names.

Where it differs from Confluent's registry (and from the stand-in), as measured with 3.3.3:

* The global compatibility level starts as NONE and nothing is enforced until a level is set, so
  :meth:`ApicurioRegistry.start` sets BACKWARD, Confluent's default.
* Schema texts come back canonicalised (compact, Avro's key order; docs, defaults and custom
  properties kept; a primitive written as an object, such as our key schemas
  ``{"name": "course_key", "type": "string"}``, comes back as ``"string"``): compare parsed schemas,
  not texts (:attr:`ApicurioRegistry.keeps_schema_text` is False).
* Schema ids are small integers, as Confluent's, but may have gaps (one showed here after a mix of
  refused registrations, look-ups and checks).
* ``verbose=true`` compatibility checks give no ``messages``; the 409 text on registration differs.
  Checking against a subject that does not exist answers 40401 for ``/versions`` but
  ``is_compatible: true`` for ``/versions/latest``.
* ``GET /subjects`` ignores ``subjectPrefix``; :meth:`ApicurioRegistry.subjects` filters itself.

``python -m tests.support.apicurio fetch`` fetches it ahead of time and prints the folder;
``python -m tests.support.apicurio run`` serves one until interrupted.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from edx_event_bus_kafka.testing import free_loopback_port, wait_for
from edx_event_bus_kafka.testing.brokers import die_with_parent, folder_lock, stop_process

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The release fetched and tested (``EVENT_BUS_TEST_APICURIO_VERSION`` picks another 3.x).
APICURIO_VERSION = os.environ.get("EVENT_BUS_TEST_APICURIO_VERSION") or "3.3.3"
#: A folder holding an unpacked distribution (``quarkus-run.jar`` at its top), or where to fetch it.
DIST_ENV = "EVENT_BUS_TEST_APICURIO_DIR"
#: A Java home to run it with, tried before ``JAVA_HOME`` and the JDKs in ``/usr/lib/jvm``.
JAVA_ENV = "EVENT_BUS_TEST_REGISTRY_JAVA_HOME"
#: Apicurio 3.x is compiled for Java 21 (class file version 65).
MIN_JAVA = 21
#: The Confluent-compatible API under the server's root.
CCOMPAT_PATH = "/apis/ccompat/v7"
#: A small heap and a quick start (C1 only); it idles at about 260 MB RSS.
JVM_OPTIONS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError",
               "-Djava.awt.headless=true"]
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class ApicurioError(RuntimeError):
    """Apicurio Registry could not be fetched, found or started; the message says what was tried."""


def default_dist_dir(version: str = APICURIO_VERSION) -> Path:
    """``$EVENT_BUS_TEST_APICURIO_DIR``, else ``.apicurio/apicurio-registry-VERSION`` in the repository."""
    configured = os.environ.get(DIST_ENV)
    if configured:
        return Path(configured).expanduser()
    return REPO_ROOT / ".apicurio" / f"apicurio-registry-{version}"


def _is_unpacked(folder: Path) -> bool:
    return (folder / "quarkus-run.jar").is_file() and (folder / "lib" / "main").is_dir()


def ensure_apicurio(folder: Path | None = None, *, version: str = APICURIO_VERSION) -> Path:
    """The unpacked distribution's folder, fetched from Maven Central with ``mvn`` if it is missing.

    Raises:
        ApicurioError: it is missing and Maven is not installed or failed.

    """
    folder = Path(folder) if folder is not None else default_dist_dir(version)
    if _is_unpacked(folder):
        return folder
    with folder_lock(folder):
        if _is_unpacked(folder):  # another process fetched it while this one waited
            return folder
        maven = shutil.which("mvn")
        if maven is None:
            raise ApicurioError(f"Apicurio Registry {version} is not in {folder}: install Maven (mvn) so it can be "
                                f"fetched from Maven Central, or set {DIST_ENV} to an unpacked distribution")
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            artifact = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
            print(f"[apicurio] fetching {artifact} from Maven Central into {folder}", file=sys.stderr, flush=True)
            result = subprocess.run([maven, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}",
                                     f"-DoutputDirectory={staging}"], capture_output=True, text=True, check=False)
            archives = list(staging.glob("*.tar.gz"))
            if result.returncode != 0 or len(archives) != 1:
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
                raise ApicurioError(f"could not fetch {artifact} with Maven (exit {result.returncode}):\n{tail}")
            with tarfile.open(archives[0]) as archive:
                archive.extractall(staging, filter="data")  # the archive's top level is the app folder
            archives[0].unlink()  # Maven keeps its own copy in ~/.m2
            if not _is_unpacked(staging):
                raise ApicurioError(f"{artifact} has no quarkus-run.jar and lib/main/ at its top level")
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def java_major_version(java: str) -> int | None:
    """The feature release of a ``java`` executable (8 for ``1.8.0_x``, 25 for ``25.0.1``), or None."""
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if result.returncode != 0 or found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def find_java(minimum: int = MIN_JAVA, *, jvm_root: Path = Path("/usr/lib/jvm")) -> str:
    """A ``java`` of release ``minimum`` or newer.

    Tried in order: ``$EVENT_BUS_TEST_REGISTRY_JAVA_HOME`` (when set, it must do), ``$JAVA_HOME``,
    ``java`` on ``PATH``, then the newest JDK in ``jvm_root`` (where Debian and Temurin install them).

    Raises:
        ApicurioError: none qualifies; the message lists each candidate with its version.

    """
    tried: list[str] = []

    def version_of(java: str, origin: str) -> int:
        version = java_major_version(java)
        tried.append(f"{java} ({origin}): " + (f"Java {version}" if version else "not a working java"))
        return version or 0

    chosen = os.environ.get(JAVA_ENV)
    if chosen:
        java = str(Path(chosen).expanduser() / "bin" / "java")
        if version_of(java, f"${JAVA_ENV}") >= minimum:
            return java
        raise ApicurioError(f"Apicurio Registry needs Java {minimum} or newer; {tried[0]}: point {JAVA_ENV} at a "
                            f"JDK {minimum}+ home, or unset it to search JAVA_HOME, PATH and {jvm_root}")
    home = os.environ.get("JAVA_HOME")
    for candidate, origin in ((str(Path(home) / "bin" / "java") if home else None, "$JAVA_HOME"),
                              (shutil.which("java"), "PATH")):
        if candidate is not None and version_of(candidate, origin) >= minimum:
            return candidate
    installed = [(version_of(str(java_path), str(jvm_root)), str(java_path))
                 for java_path in sorted(jvm_root.glob("*/bin/java"))]
    newest = max(installed, default=(0, ""))
    if newest[0] >= minimum:
        return newest[1]
    listing = "\n  ".join(tried) or f"nothing: no JAVA_HOME, no java on PATH, no {jvm_root}/*/bin/java"
    raise ApicurioError(f"Apicurio Registry needs Java {minimum} or newer; install one or set {JAVA_ENV} "
                        f"to a JDK {minimum}+ home. Tried:\n  {listing}")


class ApicurioRegistry:
    """One Apicurio Registry server on 127.0.0.1, in memory, BACKWARD compatibility, for tests.

    The same surface as :class:`~tests.support.schema_registry.SchemaRegistryStandIn` where tests use
    it: :attr:`url` (the Confluent-compatible API), ``start()``/``stop()``, a context manager and
    :meth:`subjects`. Unlike the stand-in its store does not survive ``stop()``: each start is empty.
    """

    #: Whether :meth:`subjects` returns the exact texts registered (no: Apicurio canonicalises them).
    keeps_schema_text = False

    def __init__(self, *, dist_dir: Path | None = None, startup_timeout: float = 120.0,
                 stop_timeout: float = 20.0, compatibility: str = "BACKWARD") -> None:
        self.dist_dir = dist_dir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.compatibility = compatibility
        self.startup_seconds: float | None = None
        self.workdir: Path | None = None
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> ApicurioRegistry:
        """Fetch if needed, start the server, wait until its API answers and set the compatibility level."""
        if self.running:
            return self
        dist = ensure_apicurio(self.dist_dir)
        java = find_java()
        self.workdir = Path(tempfile.mkdtemp(prefix="apicurio-"))
        (self.workdir / "tmp").mkdir()
        self._port = free_loopback_port()
        options = {
            "quarkus.http.host": "127.0.0.1", "quarkus.http.port": self._port,
            "quarkus.management.host": "127.0.0.1", "quarkus.management.port": free_loopback_port(),
            "quarkus.otel.sdk.disabled": "true",  # no OpenTelemetry exporter trying to reach a collector
            "java.io.tmpdir": self.workdir / "tmp",
        }
        command = [java, *JVM_OPTIONS, *(f"-D{key}={value}" for key, value in options.items()),
                   "-jar", str(dist / "quarkus-run.jar")]
        started = time.monotonic()
        with open(self.workdir / "registry.log", "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                preexec_fn=die_with_parent,  # noqa: PLW1509 -- only prctl
            )
        atexit.register(self.stop)
        try:
            wait_for(self._ready, timeout=self.startup_timeout, interval=0.1, what=f"Apicurio Registry on {self.url}")
            self._request("PUT", "/config", {"compatibility": self.compatibility})
        except (TimeoutError, ApicurioError, OSError) as error:
            log_tail = self.log_tail()
            self.stop()
            raise ApicurioError(f"{error}; registry log:\n{log_tail}") from error
        self.startup_seconds = time.monotonic() - started
        logger.info("Apicurio Registry ready on %s in %.2f s", self.url, self.startup_seconds)
        return self

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then a kill; deletes its folder (log included). Idempotent."""
        process, self._process = self._process, None
        stop_process(process, timeout=self.stop_timeout, what="Apicurio Registry")
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self._port = None

    def __enter__(self) -> ApicurioRegistry:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def port(self) -> int:
        """The HTTP port (only while running)."""
        if self._port is None:
            raise ApicurioError("Apicurio Registry is not running")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the Confluent-compatible API, for ``SchemaRegistryClient({"url": ...})``."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log (while its folder exists)."""
        if self.workdir is None:
            return ""
        try:
            text = (self.workdir / "registry.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "".join(text.splitlines(keepends=True)[-lines:])

    # -- what tests read -----------------------------------------------------------------------

    def subjects(self, prefix: str = "") -> dict[str, list[str]]:
        """Each live subject starting with ``prefix`` and its schema texts (as Apicurio returns them), oldest first."""
        found: dict[str, list[str]] = {}
        for subject in sorted(self._request("GET", "/subjects")):
            if subject.startswith(prefix):  # filtered here: Apicurio ignores ?subjectPrefix
                path = f"/subjects/{quote(subject, safe='')}/versions"
                found[subject] = [self._request("GET", f"{path}/{version}")["schema"]
                                  for version in self._request("GET", path)]
        return found

    # -- internals -----------------------------------------------------------------------------

    def _ready(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            code = None if self._process is None else self._process.returncode
            raise ApicurioError(f"the Apicurio Registry process exited with status {code}")
        try:
            self._request("GET", "/subjects", timeout=2)
        except (OSError, ApicurioError):  # not listening yet, or up but not serving the API yet
            return False
        return True

    def _request(self, method: str, path: str, body: Any = None, *, timeout: float = 10) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            raise ApicurioError(f"{method} {path} answered HTTP {error.code}: {error.read()[:500]!r}") from error


def main(argv: list[str] | None = None) -> int:
    """``fetch [FOLDER]`` prints the distribution's folder; ``run`` serves one until interrupted."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["fetch"] and len(args) <= 2:
            print(ensure_apicurio(Path(args[1]) if len(args) == 2 else None))
            return 0
        if args == ["run"]:
            with ApicurioRegistry() as registry:
                print(f"Apicurio Registry ready in {registry.startup_seconds:.1f} s on {registry.url}", flush=True)
                try:
                    registry._process.wait()  # type: ignore[union-attr]  # running: it has a process
                except KeyboardInterrupt:
                    pass
            return 0
    except ApicurioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("usage: python -m tests.support.apicurio fetch [FOLDER] | run", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
