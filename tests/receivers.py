"""Signal receivers for worker subprocess tests, switched on by environment variables.

``TEST_RECEIVER_LOG``: a JSON-lines file; each call appends ``{"phase": "start"|"done", "id", ...}``.
``TEST_RECEIVER_MODE``: ``ok`` (default), ``fail_first:N`` (raise on the first N attempts of each
event), ``always_fail``, ``sleep:S`` (take S seconds, to be interrupted by signals),
``sleep_random:S`` (take a random time up to S seconds) or ``sleep_user:ID:S`` (take S seconds for
the event of user ID only), ``db_down_until:PATH`` (raise Django's ``OperationalError``, as with
the database gone, until PATH exists).
``TEST_ARRIVAL_LOG``: a file of ``<event id> <arrival time>`` lines (the latency benchmark's receiver).
``TEST_EFFECT_MODE``: connects :func:`record_effect`, a receiver with a database effect (see there).
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from typing import Any

from edx_event_bus_kafka.internal.wire.records import event_data_to_record


class ReceiverFailure(Exception):
    """Raised on purpose by the test receiver."""


def _log(entry: dict[str, Any]) -> None:
    with open(os.environ["TEST_RECEIVER_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
        log.flush()
        os.fsync(log.fileno())


def _attempts_so_far(event_id: str) -> int:
    entries = read_log(os.environ["TEST_RECEIVER_LOG"])
    return sum(1 for entry in entries if entry["id"] == event_id and entry["phase"] == "start")


def record_event(sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
    """Log the event (data as its Avro record, metadata as JSON) and behave as TEST_RECEIVER_MODE says."""
    metadata = kwargs.pop("metadata")
    kwargs.pop("from_event_bus", None)
    event_id = str(metadata.id)
    attempt = _attempts_so_far(event_id) + 1
    entry = {
        "id": event_id, "attempt": attempt, "pid": os.getpid(), "time": time.time(), "thread": threading.get_ident(),
        "metadata": json.loads(metadata.to_json()), "data": event_data_to_record(kwargs),
    }
    _log({**entry, "phase": "start"})
    mode = os.environ.get("TEST_RECEIVER_MODE", "ok")
    if mode == "always_fail":
        raise ReceiverFailure(f"always failing on {event_id}")
    if mode.startswith("db_down_until:") and not os.path.exists(mode.split(":", 1)[1]):
        from django.db import OperationalError

        raise OperationalError(f"connection refused (test: the database is down) on {event_id}")
    if mode.startswith("fail_first:") and attempt <= int(mode.split(":", 1)[1]):
        raise ReceiverFailure(f"failing attempt {attempt} on {event_id}")
    if mode.startswith("sleep:"):
        time.sleep(float(mode.split(":", 1)[1]))
    if mode.startswith("sleep_random:"):
        time.sleep(random.uniform(0, float(mode.split(":", 1)[1])))
    if mode.startswith("sleep_user:"):
        _, user_id, seconds = mode.split(":")
        if entry["data"]["enrollment"]["user"]["id"] == int(user_id):
            time.sleep(float(seconds))
    _log({**entry, "phase": "done"})


_arrivals: Any = None
_arrivals_lock = threading.Lock()


def record_arrival(sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
    """Note ``<event id> <time.time()> <user id>`` per event in TEST_ARRIVAL_LOG, flushed, not synced.

    With ``TEST_ARRIVAL_FAIL_EVERY=N``, the events of user ids divisible by N fail instead (the soak's
    dead letters).
    """
    global _arrivals  # noqa: PLW0603 -- one file per worker process
    arrived = time.time()
    user_id = kwargs["enrollment"].user.id
    fail_every = int(os.environ.get("TEST_ARRIVAL_FAIL_EVERY") or 0)
    if fail_every and user_id % fail_every == 0:
        raise ReceiverFailure(f"failing event of user {user_id} on purpose")
    with _arrivals_lock:
        if _arrivals is None:
            _arrivals = open(os.environ["TEST_ARRIVAL_LOG"], "a", encoding="utf-8")
        _arrivals.write(f"{kwargs['metadata'].id} {arrived:.6f} {user_id}\n")
        _arrivals.flush()


def _effects_so_far(event_id: str) -> int:
    return sum(1 for entry in read_log(os.environ["TEST_RECEIVER_LOG"])
               if entry["id"] == event_id and entry["phase"] == "effect")


def _wait_for_file(path: str, timeout: float = 120.0) -> None:
    """Block until ``path`` exists: the test creates it to let the receiver go on."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise ReceiverFailure(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def record_effect(sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
    """Write one ``EventEffect`` row for the event, log ``effect``, then behave as TEST_EFFECT_MODE says.

    ``ok``; ``fail_first:N`` (raise after writing, on the first N attempts of each event);
    ``hang_after_commit`` (once the transaction holding the row commits, log ``committed`` and hang,
    so the offset is never committed: the test kills the worker there); ``hold:PATH`` (log
    ``holding`` and wait, inside the transaction, until PATH exists).
    """
    from django.db import transaction

    from tests.models import EventEffect

    metadata = kwargs["metadata"]
    event_id = str(metadata.id)
    attempt = _effects_so_far(event_id) + 1
    EventEffect.objects.create(event_id=event_id, user_id=kwargs["enrollment"].user.id, attempt=attempt,
                               pid=os.getpid())
    entry = {"id": event_id, "attempt": attempt, "pid": os.getpid(), "time": time.time()}
    _log({**entry, "phase": "effect"})
    mode = os.environ["TEST_EFFECT_MODE"]
    if mode.startswith("fail_first:") and attempt <= int(mode.split(":", 1)[1]):
        raise ReceiverFailure(f"failing attempt {attempt} on {event_id} after writing its effect")
    if mode == "hang_after_commit":
        def hang() -> None:
            _log({**entry, "phase": "committed"})
            threading.Event().wait()  # the test kills the worker here, before the offset is committed
        transaction.on_commit(hang)
    if mode.startswith("hold:"):
        _log({**entry, "phase": "holding"})
        _wait_for_file(mode.split(":", 1)[1])


def read_log(path: str) -> list[dict[str, Any]]:
    """Entries written so far (empty when the file does not exist yet).

    A last line without its newline is an entry another process is still appending (a reader can
    see part of it: seen as ``{"attempt": 1,`` with two workers sharing a log): it is left for the
    next read.
    """
    try:
        with open(path, encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.endswith("\n") and line.strip()]
    except FileNotFoundError:
        return []
