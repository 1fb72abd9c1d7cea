"""Django state hygiene before each consumed message, as a request would get.

A worker is one long "request": Django's per-request connection checks never run, so a connection
broken by a database restart would stay broken. Before each message we drop connections that saw
an error and are no longer usable, or that outlived ``CONN_MAX_AGE`` (when it is positive), and we
clear the request cache. A healthy connection costs no query: ``is_usable()`` (a round trip) runs
only after an error was seen on that connection.
"""
from __future__ import annotations

import time

from django.db import connections
from edx_django_utils.cache import RequestCache


def _refresh_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.in_atomic_block:
            continue
        if connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()  # reconnects lazily on next use
                continue
        max_age = connection.settings_dict.get("CONN_MAX_AGE")
        if max_age and connection.close_at is not None and time.monotonic() >= connection.close_at:
            connection.close()


def prepare_for_new_work_cycle() -> None:
    """Give the next message a usable database connection and an empty request cache."""
    _refresh_connections()
    RequestCache.clear_all_namespaces()
