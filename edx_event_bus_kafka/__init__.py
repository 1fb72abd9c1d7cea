"""Kafka implementation of the Open edX event bus.

The public API is what ``__all__`` lists; everything under ``edx_event_bus_kafka.internal`` may
change without notice. Names are loaded on first use so that importing the package (for example
from a pytest plugin or ``setup.py``) does not import Django models or confluent-kafka.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "7.0.0"

_PUBLIC: dict[str, str] = {
    "create_producer": "edx_event_bus_kafka.internal.produce.producer",
    "KafkaEventProducer": "edx_event_bus_kafka.internal.produce.producer",
    "KafkaEventConsumer": "edx_event_bus_kafka.internal.consume.consumer",
    "EventBusKafkaError": "edx_event_bus_kafka.internal.errors",
    "ConfigurationError": "edx_event_bus_kafka.internal.errors",
    "EventProductionException": "edx_event_bus_kafka.internal.errors",
    "EventConsumptionException": "edx_event_bus_kafka.internal.errors",
    "UnusableMessageError": "edx_event_bus_kafka.internal.errors",
    "ReceiverError": "edx_event_bus_kafka.internal.errors",
}

__all__ = ["__version__", *_PUBLIC.keys()]  # noqa: PLE0604 -- keys are the public names


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
