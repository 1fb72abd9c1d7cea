"""Where the reference's ``create_producer`` and ``KafkaEventProducer`` were; kept importable for services.

The producer lives in :mod:`edx_event_bus_kafka.internal.produce.producer`.
"""
from edx_event_bus_kafka.internal.produce.producer import KafkaEventProducer, create_producer

__all__ = ["KafkaEventProducer", "create_producer"]
