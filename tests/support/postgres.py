"""A throw-away PostgreSQL server on loopback, from the Debian packages, for outbox concurrency tests.

initdb and postgres refuse to run as root, so when the tests run as root the server runs as the
``postgres`` system user (created by the Debian package). Data lives in a temp dir; ``stop()``
removes it.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edx_event_bus_kafka.testing import free_loopback_port, wait_for


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return path


class TemporaryPostgres:
    """``start()`` a private cluster on 127.0.0.1:<free port> with trust auth; ``dsn`` to connect.

    Tests run it without fsync (``-F``); ``durable=True`` keeps PostgreSQL's default (fsync on), for
    benchmarks whose figures must include the cost of a commit reaching the disk.
    """

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.port = free_loopback_port()
        self.root = Path(tempfile.mkdtemp(prefix="pg-"))
        self.data = self.root / "data"
        self._as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_user, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> TemporaryPostgres:
        if self._as_user:
            shutil.chown(self.root, user="postgres")
        self._run(_bin("initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "--no-sync")
        self.start_server()
        return self

    def start_server(self) -> None:
        """Start the server (again) on the same port and data; returns once it accepts connections."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "start",
                  "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root}{'' if self.durable else ' -F'}")
        wait_for(self._accepts, timeout=30, what="PostgreSQL to accept connections")

    def stop_server(self) -> None:
        """An outage: stop the server at once (connections are cut); its data stays for ``start_server``."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def terminate_connections(self, database: str) -> int:
        """Cut every client connection to ``database`` (``pg_terminate_backend``); returns how many."""
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            rows = connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchall()
        return sum(1 for (terminated,) in rows if terminated)

    def _accepts(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
