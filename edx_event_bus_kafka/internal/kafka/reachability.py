"""Saying when a lost broker is reachable again, so that an outage has an end in the log.

librdkafka reports a broker it lost through ``error_cb`` (``_TRANSPORT``: "host:port/1: Connect to
... failed", ``_RESOLVE``, or ``_ALL_BROKERS_DOWN``), which the client's owner logs (collapsed), but
it never says when the broker is back. A :class:`BrokerWatch` remembers the brokers such errors
named and reads librdkafka's statistics (``stats_cb``, every :data:`STATS_INTERVAL_MS`) only while
one is remembered: the first report that shows it up ends its outage with one line saying how long
it lasted. Statistics cost nothing to read while every broker is fine (the report is not parsed).
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from edx_event_bus_kafka.internal.runtime.log_repeats import log_collapsed

#: How often librdkafka reports its statistics, hence how soon a broker's return is noticed.
STATS_INTERVAL_MS = 5000

#: librdkafka's error names that mean a broker cannot be reached (not that it refused us).
UNREACHABLE_ERRORS = frozenset({"_TRANSPORT", "_RESOLVE", "_ALL_BROKERS_DOWN"})

#: What an error names when it is about every broker ("1/1 brokers are down").
ANY_BROKER = "every broker"

# "sasl_ssl://b-1.example:9096/1: Connect to ..." -> "sasl_ssl://b-1.example:9096"
_BROKER_IN_ERROR = re.compile(r"^(\S+)/[^/\s:]+: ")


class BrokerWatch:
    """Remembers the brokers a client lost and logs, once each, when statistics show them up again."""

    def __init__(self, logger: logging.Logger, client: str):
        self.logger = logger
        self.client = client
        self._lost: dict[str, float] = {}  # broker address (or ANY_BROKER) -> when first reported lost
        self._lock = threading.Lock()

    def error(self, error: Any) -> None:
        """A client-level error from ``error_cb``: remember the broker it says is unreachable."""
        if _error_name(error) not in UNREACHABLE_ERRORS:
            return
        match = _BROKER_IN_ERROR.match(str(error.str()) if hasattr(error, "str") else str(error))
        with self._lock:
            self._lost.setdefault(match.group(1) if match else ANY_BROKER, time.monotonic())

    @property
    def lost(self) -> list[str]:
        """The brokers reported unreachable and not yet seen up again."""
        with self._lock:
            return sorted(self._lost)

    def statistics(self, report: str) -> None:
        """Librdkafka's statistics (JSON): a remembered broker that is up again ends its outage."""
        if not self._lost:
            return
        try:
            brokers = json.loads(report).get("brokers", {})
        except ValueError:
            return
        up = {str(name).rsplit("/", 1)[0] for name, broker in brokers.items() if broker.get("state") == "UP"}
        now, back = time.monotonic(), []
        with self._lock:
            for broker, since in list(self._lost.items()):
                if broker in up or (broker == ANY_BROKER and up):
                    del self._lost[broker]
                    back.append((broker, now - since))
        if back:
            log_collapsed(self.logger, logging.WARNING, self._back_line(back))

    def _back_line(self, back: list[tuple[str, float]]) -> str:
        """One line for every broker one report shows up again, with the longest outage among them."""
        named = sorted(broker for broker, _ in back if broker != ANY_BROKER)
        lasted = max(seconds for _, seconds in back)
        if not named:
            what = "the brokers are"
        elif len(named) == 1:
            what = f"broker {named[0]} is"
        else:
            what = f"brokers {', '.join(named)} are"
        return f"Kafka {self.client}: {what} reachable again after {lasted:.1f} s"

    def configure(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with our ``stats_cb`` (a ``stats_cb`` of the operator's own is still called)."""
        theirs: Callable[[str], object] | None = config.get("stats_cb")

        def both(report: str) -> None:
            self.statistics(report)
            if theirs is not None:
                theirs(report)

        return {"statistics.interval.ms": STATS_INTERVAL_MS, **config, "stats_cb": both}


def _error_name(error: Any) -> str:
    try:
        return str(error.name())
    except Exception:  # noqa: BLE001 -- not a KafkaError: not ours to interpret
        return ""
