"""Telling a broker that refuses us (credentials, TLS) from one that is merely out of reach.

librdkafka reports a failed SASL login or TLS handshake as a non-fatal client error and tries
again, for ever, a few times a second. For an unreachable broker that is right; for a wrong
password or an untrusted certificate nothing will change until someone fixes the settings, so
workers stop with the configuration exit status, commands fail fast, and long-lived producers say
so once (then at most once a minute) instead of once per reconnect.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from edx_event_bus_kafka.internal.errors import BrokerRefusedError
from edx_event_bus_kafka.internal.kafka.protocols import AdminClientLike, ConsumerClient

if TYPE_CHECKING:
    from confluent_kafka.admin import ClusterMetadata

logger = logging.getLogger(__name__)

#: How often a long-lived client repeats that the broker still refuses it.
REPEAT_EVERY_SEC = 60.0

_CREDENTIALS_HINT = (
    "check the SASL credentials: EVENT_BUS_KAFKA_API_KEY and EVENT_BUS_KAFKA_API_SECRET (SASL/PLAIN), "
    "or sasl.mechanism, sasl.username and sasl.password in EVENT_BUS_KAFKA_CLIENT_CONFIG"
)
_SERVER_CERTIFICATE_HINT = (
    "check that ssl.ca.location in EVENT_BUS_KAFKA_CLIENT_CONFIG names the CA that signed the broker's "
    "certificate, and that the broker address matches that certificate"
)
_CLIENT_CERTIFICATE_HINT = (
    "the broker rejected our TLS client certificate: check ssl.certificate.location and ssl.key.location "
    "in EVENT_BUS_KAFKA_CLIENT_CONFIG, and that the broker trusts the CA that signed it"
)


def refusal(error: Any) -> str | None:
    """A one-line reason when ``error`` (a ``KafkaError``) means the broker refused our login or TLS setup.

    ``None`` for every other error, unreachable brokers included.
    """
    from confluent_kafka import KafkaError

    try:
        code, text = error.code(), str(error.str())
    except AttributeError:
        return None
    if code == KafkaError._AUTHENTICATION:
        return f"authentication failed: {text}; {_CREDENTIALS_HINT}"
    if code == KafkaError._SSL:
        return f"TLS handshake failed: {text}; {_SERVER_CERTIFICATE_HINT}"
    # A broker that requires a client certificate answers a missing or untrusted one with a TLS
    # alert, which librdkafka reports as a transport error: only its text tells it apart.
    lowered = text.lower()
    if code == KafkaError._TRANSPORT and "alert" in lowered and ("ssl" in lowered or "tls" in lowered):
        return f"TLS handshake failed: {text}; {_CLIENT_CERTIFICATE_HINT}"
    return None


class RefusalWatch:
    """Part of a client's ``error_cb``: remembers the first refusal and logs refusals sparingly.

    ``seen(error)`` returns whether ``error`` was a refusal, in which case the caller ignores it.
    ``reason`` is the first refusal's reason (``None`` while the broker accepts us).
    """

    def __init__(self, client: str, *, repeat_every_sec: float = REPEAT_EVERY_SEC):
        self.client = client
        self.repeat_every_sec = repeat_every_sec
        self.reason: str | None = None
        self.count = 0
        self._last_logged: float | None = None
        self._lock = threading.Lock()

    def seen(self, error: Any) -> bool:
        """Record ``error`` if it is a refusal; log the first one, then at most once per period."""
        reason = refusal(error)
        if reason is None:
            return False
        now = time.monotonic()
        with self._lock:
            self.count += 1
            self.reason = self.reason or reason
            due = self._last_logged is None or now - self._last_logged >= self.repeat_every_sec
            if due:
                self._last_logged = now
            count = self.count
        if due:
            repeated = f" (refused {count} times so far)" if count > 1 else ""
            logger.error("Kafka refused the %s: %s%s", self.client, reason, repeated)
        return True

    def check(self) -> None:
        """Raise :class:`BrokerRefusedError` if the broker refused us."""
        if self.reason is not None:
            raise BrokerRefusedError(f"Kafka refused the {self.client}: {self.reason}")


#: Blocking metadata calls wait in slices this long, serving error callbacks in between.
WAIT_SLICE_SEC = 0.5


def list_topics_watched(client: ConsumerClient | AdminClientLike, watch: RefusalWatch, timeout: float,
                        topic: str | None = None) -> ClusterMetadata:
    """``client.list_topics(topic)`` within ``timeout`` s, ending early if the broker refuses us.

    librdkafka hands error callbacks to the application only when it polls, and ``list_topics``
    does not poll; so the wait is cut into slices with a ``poll(0)`` between them.

    Raises:
        BrokerRefusedError: the broker refused our credentials or TLS setup.
        KafkaException: no answer within ``timeout`` (as ``list_topics`` raises it).

    """
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        wait = max(0.01, min(WAIT_SLICE_SEC, remaining))
        try:
            return client.list_topics(timeout=wait) if topic is None else client.list_topics(topic, timeout=wait)
        except KafkaException:
            client.poll(0)
            watch.check()
            if time.monotonic() >= deadline:
                raise
