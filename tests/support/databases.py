"""One migrated PostgreSQL database per test, as one service's database, for real worker processes."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import psycopg

from tests.support.postgres import TemporaryPostgres
from tests.support.workers import ROOT


class Database:
    """One migrated database of ``server``; ``env`` points a process at it."""

    def __init__(self, server: TemporaryPostgres, label: str):
        self.server = server
        self.name = f"{label}_{uuid.uuid4().hex[:8]}"
        server.create_database(self.name)
        self.env = {"TEST_POSTGRES_PORT": str(server.port), "TEST_POSTGRES_DB": self.name}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env={**os.environ, **self.env},
                       check=True, timeout=120)

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.server.dsn(self.name)) as connection:
            return list(connection.execute(sql, params).fetchall())

    def effects(self) -> dict[str, list[int]]:
        """Event id -> the attempt numbers of its effect rows (one entry per committed effect)."""
        found: dict[str, list[int]] = {}
        for event_id, attempt in self.rows("SELECT event_id, attempt FROM tests_eventeffect ORDER BY id"):
            found.setdefault(event_id, []).append(attempt)
        return found

    def inbox(self, group: str) -> list[str]:
        rows = self.rows("SELECT event_id FROM edx_event_bus_kafka_inboxevent WHERE consumer_group = %s", group)
        return sorted(event_id for (event_id,) in rows)
