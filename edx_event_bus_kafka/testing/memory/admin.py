"""The in-memory admin client: listing and creating topics, as a single-broker cluster answers."""
from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ClusterMetadata, NewTopic

from .cluster import ClusterState, MemoryClient
from .storage import cluster_metadata, legal_topic


class MemoryAdmin(MemoryClient):
    """Shaped like confluent-kafka's ``AdminClient``, for the calls of ``AdminClientLike``."""

    kind = "admin"

    def __init__(self, kafka: ClusterState, config: dict[str, Any]):
        super().__init__(kafka, config)
        kafka.register(self)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        """Metadata of every topic, or of ``topic``, which this creates if topics are auto-created.

        An admin client asks for metadata as a producer does, and a broker with
        ``auto.create.topics.enable`` answers a request naming a missing topic by creating it.
        """
        self._wait_for_metadata(timeout)
        with self.kafka.lock:
            if topic is not None:
                self.kafka.topic_for_produce(topic)
            return cluster_metadata(self.kafka.topics, topic)

    def create_topics(self, new_topics: list[NewTopic], **kwargs: Any) -> dict[str, Future[Any]]:
        """Create the topics; each future fails with a ``KafkaException`` as the broker would refuse it.

        Partition count -1 means the broker's default; replication factor -1 or 1 is accepted (there
        is one broker), more is refused with ``INVALID_REPLICATION_FACTOR``. ``validate_only`` creates
        nothing.

        Raises:
            ValueError: no topics, as confluent-kafka raises it.

        """
        if not new_topics:
            raise ValueError("Expected non-empty list of NewTopic objects")
        futures: dict[str, Future[Any]] = {}
        with self.kafka.lock:
            for new in new_topics:
                future: Future[Any] = Future()
                refusal = self._refusal(new)
                if refusal is not None:
                    future.set_exception(KafkaException(refusal))
                else:
                    if not kwargs.get("validate_only"):
                        partitions = self.kafka.default_partitions if new.num_partitions == -1 else new.num_partitions
                        self.kafka.create(new.topic, partitions, dict(new.config or {}))
                    future.set_result(None)
                futures[new.topic] = future
        return futures

    def _refusal(self, new: NewTopic) -> KafkaError | None:  # noqa: PLR0911 -- one return per refusal reason
        kafka = self.kafka
        if kafka.down or kafka.refusal is not None:
            return KafkaError(KafkaError._TRANSPORT, "Failed to create topics: Local: Broker transport failure")
        injected = kafka.take_fault("create", topic=new.topic)
        if isinstance(injected, KafkaError):
            return injected
        if new.topic in kafka.denied_topics:
            return kafka.denied_topics[new.topic]
        if not legal_topic(new.topic):
            return KafkaError(KafkaError.TOPIC_EXCEPTION, f"Topic name {new.topic!r} is illegal")
        if new.topic in kafka.topics:
            return KafkaError(KafkaError.TOPIC_ALREADY_EXISTS, f"Topic '{new.topic}' already exists.")
        if new.num_partitions == 0 or new.num_partitions < -1:
            return KafkaError(KafkaError.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
        if new.replication_factor > 1:
            return KafkaError(KafkaError.INVALID_REPLICATION_FACTOR,
                              f"Replication factor: {new.replication_factor} larger than available brokers: 1.")
        return None

    def poll(self, timeout: float = -1) -> int:
        """Serve error callbacks (waiting up to ``timeout`` s when there are none)."""
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while True:
            with self.kafka.lock:
                errors = self._take_errors()
                if not errors:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return 0
                    self.kafka.lock.wait(remaining)
                    continue
            self._serve_errors(errors)
            return len(errors)
