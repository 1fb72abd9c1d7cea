"""Where the reference's ``KafkaEventConsumer`` was; kept importable for services written against it.

The consumer lives in :mod:`edx_event_bus_kafka.internal.consume.consumer`.
"""
from edx_event_bus_kafka.internal.consume.consumer import KafkaEventConsumer

__all__ = ["KafkaEventConsumer"]
