"""Inbox helper process: ``python -m tests.support.inbox_script threads-race`` (on PostgreSQL).

Two threads of one process call ``store.run_once`` for the same event, as the worker threads of a
parallel consumer would, each on its own Django connection. The first inserts the inbox row, writes
its effect and waits inside its transaction; the second starts once the first is inside, and this
script then watches PostgreSQL (``pg_stat_activity``) until the second thread's insert is seen
waiting for a lock, and only then lets the first commit. Prints one JSON line: what each thread's
``run_once`` returned, whether the second was seen waiting, and the effect rows of the event.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.db import connection, connections  # noqa: E402

from edx_event_bus_kafka.internal.inbox import store  # noqa: E402
from edx_event_bus_kafka.testing import wait_for  # noqa: E402
from tests.models import EventEffect  # noqa: E402

WAIT_TIMEOUT_SEC = 60.0


def waiting_inbox_inserts() -> int:
    """Backends of this database waiting for a lock in an insert into the inbox table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE %s", ['INSERT INTO "edx_event_bus_kafka_inboxevent"%'])
        return int(cursor.fetchone()[0])


def threads_race() -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    inside, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def first_receivers() -> None:
        EventEffect.objects.create(event_id=event_id, user_id=1, attempt=1, pid=os.getpid())
        inside.set()
        release.wait(WAIT_TIMEOUT_SEC)

    def second_receivers() -> None:
        EventEffect.objects.create(event_id=event_id, user_id=1, attempt=2, pid=os.getpid())

    def run(name: str, offset: int, receivers: Any) -> None:
        try:
            delivery = store.Delivery(group="threads", event_id=event_id, topic="t", partition=offset, offset=offset)
            results[name] = store.run_once(delivery, receivers, using="default")
        except Exception as error:  # noqa: BLE001 -- reported to the test, which fails on it
            results[name] = repr(error)
        finally:
            connections.close_all()  # this thread's connections

    first = threading.Thread(target=run, args=("first", 0, first_receivers))
    second = threading.Thread(target=run, args=("second", 1, second_receivers))
    first.start()
    inside.wait(WAIT_TIMEOUT_SEC)
    second.start()
    try:
        wait_for(lambda: waiting_inbox_inserts() == 1 or not second.is_alive(), timeout=WAIT_TIMEOUT_SEC,
                 what="the second thread's insert to wait for the first thread's transaction")
        seen_waiting = second.is_alive()
    finally:
        release.set()
    first.join(WAIT_TIMEOUT_SEC)
    second.join(WAIT_TIMEOUT_SEC)
    attempts = sorted(EventEffect.objects.filter(event_id=event_id).values_list("attempt", flat=True))
    return {**results, "second_seen_waiting": seen_waiting, "effect_attempts": attempts}


def main() -> int:
    if sys.argv[1:] != ["threads-race"]:
        print("usage: python -m tests.support.inbox_script threads-race", file=sys.stderr)
        return 2
    print(json.dumps(threads_race()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
