"""The in-memory producer: ``produce`` queues, the broker stores at once when it is up, ``poll`` reports."""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ClusterMetadata

from edx_event_bus_kafka.internal.kafka.protocols import HeaderList, Headers

from .cluster import ClusterState, MemoryClient
from .storage import (
    MemoryMessage,
    as_bytes,
    cluster_metadata,
    config_int,
    header_pairs,
    legal_topic,
    message_size,
    partitioner,
)

DeliveryCallback = Callable[[KafkaError | None, Any], None]


@dataclass
class _Queued:
    """A produced message the broker has not taken yet."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: HeaderList | None
    timestamp: int
    on_delivery: DeliveryCallback | None
    expires: float  # monotonic time at which message.timeout.ms runs out

    def report(self, error: KafkaError) -> tuple[DeliveryCallback | None, KafkaError | None, MemoryMessage]:
        """A failed delivery report for this message."""
        message = MemoryMessage(self.topic, self.partition if self.partition >= 0 else None, None, key=self.key,
                                value=self.value, headers=self.headers, error=error)
        return self.on_delivery, error, message


Report = tuple[DeliveryCallback | None, KafkaError | None, MemoryMessage]


class MemoryProducer(MemoryClient):
    """Shaped like confluent-kafka's ``Producer``, for the calls of ``ProducerClient``.

    Honours ``message.max.bytes``, ``message.timeout.ms``, ``queue.buffering.max.messages`` and
    ``partitioner``; other options are accepted and ignored.
    """

    kind = "producer"

    def __init__(self, kafka: ClusterState, config: dict[str, Any]):
        super().__init__(kafka, config)
        self.max_bytes = config_int(config, "message.max.bytes", 1_000_000)
        self.timeout_sec = config_int(config, "message.timeout.ms", 300_000) / 1000
        self.max_queued = config_int(config, "queue.buffering.max.messages", 100_000)
        self.partitioner = partitioner(str(config.get("partitioner", "consistent_random")))
        self._queued: deque[_Queued] = deque()
        self._reports: deque[Report] = deque()
        kafka.register(self)

    def __len__(self) -> int:
        with self.kafka.lock:
            return len(self._queued) + len(self._reports)

    def produce(self, topic: str, value: str | bytes | None = None, key: str | bytes | None = None,  # noqa: PLR0917
                partition: int = -1, on_delivery: DeliveryCallback | None = None, timestamp: int = 0,
                headers: Headers | None = None, *, callback: DeliveryCallback | None = None) -> None:
        """Queue a message (the broker takes it at once when up); raises as librdkafka's ``produce`` does.

        Raises:
            BufferError: ``queue.buffering.max.messages`` are waiting already.
            KafkaException: the message is too large, the client is in a fatal state, or a test said so.

        """
        key_bytes, value_bytes, header_list = as_bytes(key), as_bytes(value), header_pairs(headers)
        kafka = self.kafka
        with kafka.lock:
            if self.fatal_error is not None:
                raise KafkaException(KafkaError(KafkaError._FATAL, f"Producer is in a fatal state: "
                                                                   f"{self.fatal_error.str()}"))
            injected = kafka.take_fault("produce", topic=topic)
            if isinstance(injected, BaseException):
                raise injected
            if injected is not None:
                raise KafkaException(injected)
            if message_size(key_bytes, value_bytes, header_list) > self.max_bytes:
                raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE,
                                                "Unable to produce message: Broker: Message size too large"))
            if len(self._queued) + len(self._reports) >= self.max_queued:
                raise BufferError("Local: Queue full")
            self._queued.append(_Queued(topic, partition, key_bytes, value_bytes, header_list, timestamp,
                                        on_delivery or callback, time.monotonic() + self.timeout_sec))
            self._transmit()

    def _transmit(self) -> None:
        """Hand queued messages to the broker if it is up, expire old ones (call with the lock held)."""
        kafka = self.kafka
        now = time.monotonic()
        still: deque[_Queued] = deque()
        for queued in self._queued:
            if kafka.down or kafka.refusal is not None:
                if now >= queued.expires:
                    self._reports.append(queued.report(KafkaError(KafkaError._MSG_TIMED_OUT)))
                else:
                    still.append(queued)
                continue
            self._reports.append(self._deliver(queued))
        self._queued = still

    def _deliver(self, queued: _Queued) -> Report:
        kafka = self.kafka
        injected = kafka.take_fault("delivery", topic=queued.topic)
        if isinstance(injected, KafkaError):
            return queued.report(injected)
        if not legal_topic(queued.topic):
            return queued.report(KafkaError(KafkaError.TOPIC_EXCEPTION))
        topic = kafka.topic_for_produce(queued.topic)
        if topic is None:
            return queued.report(KafkaError(KafkaError._UNKNOWN_TOPIC))
        count = len(topic.partitions)
        number = queued.partition if queued.partition >= 0 else self.partitioner(queued.key, count)
        if number >= count:
            return queued.report(KafkaError(KafkaError._UNKNOWN_PARTITION))
        stored = kafka.append(queued.topic, number, queued.key, queued.value, headers=queued.headers,
                              timestamp_ms=queued.timestamp)
        return queued.on_delivery, None, stored

    def _became_fatal(self, error: KafkaError) -> None:
        while self._queued:
            self._reports.append(self._queued.popleft().report(KafkaError(KafkaError._FATAL, error.str())))

    def _serve(self) -> int:
        """Transmit, then run the due error callbacks and delivery reports (outside the lock); how many ran."""
        with self.kafka.lock:
            self._transmit()
            errors = self._take_errors()
            reports = list(self._reports)
            self._reports.clear()
        self._serve_errors(errors)
        for on_delivery, error, message in reports:
            if on_delivery is not None:
                on_delivery(error, message)
        return len(reports)

    def _wait(self, deadline: float | None) -> bool:
        """Wait until something may be due or ``deadline``; False once the deadline passed."""
        with self.kafka.lock:
            if self._reports:
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            wake = [queued.expires for queued in self._queued]
            if deadline is not None:
                wake.append(deadline)
            self.kafka.lock.wait(max(0.0, min(wake) - now) if wake else None)
            return True

    def poll(self, timeout: float = -1) -> int:
        """Serve delivery reports and error callbacks, waiting up to ``timeout`` s (-1: for ever) for one."""
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while True:
            served = self._serve()
            if served or not self._wait(deadline):
                return served

    def flush(self, timeout: float = -1) -> int:
        """Serve reports until nothing is queued or ``timeout`` s passed; how many messages are left."""
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while True:
            self._serve()
            left = len(self)
            if not left or not self._wait(deadline):
                return left

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """Metadata of every topic, or of ``topic``; fails after ``timeout`` while the broker is down."""
        self._wait_for_metadata(timeout)
        with self.kafka.lock:
            return cluster_metadata(self.kafka.topics, topic)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        """Fail every message still waiting for the broker with ``_PURGE_QUEUE`` (reported at the next poll).

        Nothing is ever in flight here: a message is either waiting or stored.
        """
        if not in_queue:
            return
        with self.kafka.lock:
            while self._queued:
                self._reports.append(self._queued.popleft().report(KafkaError(KafkaError._PURGE_QUEUE)))
