"""Test helpers for a service's own tests: what it published, and delivering an event to its receivers.

* :func:`capture_events` routes the event bus to an in-memory Kafka for the block and gives back
  every event the service published in it, decoded from the bytes our producer wrote (type, topic,
  key, data, metadata), so a test sees exactly what a consumer elsewhere would get.
* :func:`deliver_event` hands an event to the service's receivers through the consumer's own decode
  path (encoded as our producer encodes it, decoded as ``consume_events`` decodes it, then sent as
  the signal marked as coming from the bus), without any broker.

Both work in pytest tests and in Django ``TestCase`` classes (see the how-to "Test a service's
events"). The ``published_events`` pytest fixture is :func:`capture_events` for a whole test.
"""
from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import fastavro
from openedx_events.data import EventsMetadata
from openedx_events.tooling import OpenEdxPublicSignal

from edx_event_bus_kafka.internal.consume.dispatch import emit
from edx_event_bus_kafka.internal.consume.work_cycle import prepare_for_new_work_cycle
from edx_event_bus_kafka.internal.errors import UnusableMessageError
from edx_event_bus_kafka.internal.kafka.protocols import Message
from edx_event_bus_kafka.internal.settings.clients import get_full_topic
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.internal.wire.decode import decode_message
from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MARKER,
    encoder_for,
    key_schema,
    registry_client,
    signal_schema,
)

from .memory import InMemoryKafka, MemoryMessage

__all__ = ["Delivery", "PublishedEvent", "PublishedEvents", "capture_events", "deliver_event"]


@dataclass(frozen=True)
class PublishedEvent:
    """One event as the service published it, decoded from the message our producer wrote."""

    event_type: str
    topic: str  # as the service named it, without EVENT_BUS_TOPIC_PREFIX
    full_topic: str  # the topic on the broker
    key: Any  # the decoded event key (e.g. the course key as text)
    data: dict[str, Any]  # the signal's keyword arguments, as receivers elsewhere get them
    metadata: EventsMetadata
    signal: OpenEdxPublicSignal
    message: Message  # the message itself: raw key, value and headers


class PublishedEvents(Sequence[PublishedEvent]):
    """The events published so far, oldest first: it grows as the service publishes.

    Each message is decoded once, with the settings in force when it is first looked at, and at
    the latest when :func:`capture_events` ends (so a registry configured for the test still
    answers).
    """

    def __init__(self, kafka: InMemoryKafka):
        self.kafka = kafka
        self._decoded: list[PublishedEvent] = []

    def _events(self) -> list[PublishedEvent]:
        messages = self.kafka.all_messages()
        self._decoded.extend(_published(message) for message in messages[len(self._decoded):])
        return list(self._decoded)

    @overload
    def __getitem__(self, index: int) -> PublishedEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PublishedEvent]: ...

    def __getitem__(self, index: int | slice) -> PublishedEvent | Sequence[PublishedEvent]:
        return self._events()[index]

    def __len__(self) -> int:
        return len(self.kafka.all_messages())

    def of_type(self, signal: OpenEdxPublicSignal | str) -> list[PublishedEvent]:
        """The events of one signal (or event type)."""
        event_type = signal if isinstance(signal, str) else signal.event_type
        return [event for event in self._events() if event.event_type == event_type]

    def on_topic(self, topic: str) -> list[PublishedEvent]:
        """The events published to ``topic`` (named without the prefix, as in EVENT_BUS_PRODUCER_CONFIG)."""
        return [event for event in self._events() if event.topic == topic]


@contextlib.contextmanager
def capture_events(*, delivery_mode: str | None = "immediate") -> Iterator[PublishedEvents]:
    """Within the block, the service's events go to an in-memory Kafka; the result lists them.

    ``delivery_mode`` overrides ``EVENT_BUS_KAFKA_DELIVERY_MODE`` for the block: ``immediate`` by
    default, because a test's transaction usually never commits (Django's ``TestCase``,
    pytest-django's ``db``), so ``on_commit`` events would never be sent. Pass ``None`` to keep
    the configured mode (and run on-commit callbacks, e.g. with ``captureOnCommitCallbacks``).
    ``EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS`` is pointed at the in-memory Kafka, so the producer exists
    even where tests have no broker configured.
    """
    from django.test import override_settings

    overrides: dict[str, Any] = {"EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": InMemoryKafka.bootstrap_servers}
    if delivery_mode is not None:
        overrides["EVENT_BUS_KAFKA_DELIVERY_MODE"] = delivery_mode
    with InMemoryKafka() as kafka, override_settings(**overrides):
        published = PublishedEvents(kafka)
        yield published
        published._events()  # decoded while the test's settings (and registry) are still in force


@dataclass(frozen=True)
class Delivery:
    """What :func:`deliver_event` handed to the receivers, as they got it."""

    signal: OpenEdxPublicSignal
    data: dict[str, Any]
    metadata: EventsMetadata
    receivers: int  # how many receivers ran


def deliver_event(signal: OpenEdxPublicSignal, event_data: dict[str, Any], *,
                  metadata: EventsMetadata | None = None, topic: str | None = None,
                  event_key_field: str | None = None) -> Delivery:
    """Deliver one event to this process's receivers of ``signal`` as ``consume_events`` would.

    The event is encoded as our producer encodes it (Avro value and key, CloudEvents headers),
    then decoded and emitted by the consumer's own code: receivers get the decoded data and
    metadata, marked as coming from the event bus (so the event is not published again).
    ``metadata`` defaults to fresh metadata for the signal; ``topic`` and ``event_key_field``
    default to the event type's entry in ``EVENT_BUS_PRODUCER_CONFIG`` (else a topic named
    ``deliver-event`` and the signal's first field); they matter only with a schema registry, for
    the subjects.

    Raises:
        ReceiverError: one or more receivers raised (each is named), as the consumer would see it.
        UnusableMessageError: the data does not fit the signal (our producer would not send it), or
            what was sent cannot be decoded.

    """
    from django.conf import settings as django_settings

    configured = next(iter(getattr(django_settings, "EVENT_BUS_PRODUCER_CONFIG", {}).get(signal.event_type, {})
                           .items()), None)
    topic = topic or (configured[0] if configured else "deliver-event")
    key_field = event_key_field or (configured[1].get("event_key_field") if configured else None)
    key_field = key_field or next(_key_paths(signal_schema(signal).schema))
    full_topic = get_full_topic(topic, get_settings())
    metadata = metadata or EventsMetadata(event_type=signal.event_type)
    try:
        key, value = encoder_for(signal, key_field, full_topic).encode(event_data)
    except Exception as error:  # whatever the encoder raises, the data does not fit
        raise UnusableMessageError(f"event data does not fit {signal.event_type}: {error!r}") from error
    message = MemoryMessage(full_topic, 0, 0, key=key, value=value, headers=list(headers_from_metadata(metadata)))
    prepare_for_new_work_cycle()
    decoded_signal, data, decoded_metadata = decode_message(message)
    count = emit(decoded_signal, data, decoded_metadata)
    return Delivery(decoded_signal, data, decoded_metadata, count)


def _published(message: Message) -> PublishedEvent:
    signal, data, metadata = decode_message(message)
    full_topic = str(message.topic())
    prefix = get_settings().topic_prefix
    topic = full_topic[len(prefix) + 1:] if prefix and full_topic.startswith(f"{prefix}-") else full_topic
    return PublishedEvent(signal.event_type, topic, full_topic, _decode_key(signal, message.key()), data, metadata,
                          signal, message)


def _decode_key(signal: OpenEdxPublicSignal, raw: bytes | None) -> Any:
    """The event key from its bytes: by schema id with a registry, by fingerprint without."""
    if not raw:
        return None
    if raw[:1] == CONFLUENT_MAGIC:
        client = registry_client()
        written = client.get_schema(int.from_bytes(raw[1:5], "big"))
        return fastavro.schemaless_reader(io.BytesIO(raw[5:]), fastavro.parse_schema(json.loads(written.schema_str)),
                                          None)
    if raw[:2] == SINGLE_OBJECT_MARKER:
        for path in _key_paths(signal_schema(signal).schema):
            found = key_schema(signal, path)
            if found.fingerprint == raw[2:10]:
                return fastavro.schemaless_reader(io.BytesIO(raw[10:]), found.parsed, None)
    raise ValueError(f"the key {raw[:10].hex()}... is not an Avro key of {signal.event_type}")


def _key_paths(schema: Any, prefix: str = "") -> Iterator[str]:
    """The dotted paths to the leaf fields of a record schema (what an event key can be), depth first."""
    for field in schema.get("fields", ()):
        path = f"{prefix}{field['name']}"
        if isinstance(field.get("type"), dict) and "fields" in field["type"]:
            yield from _key_paths(field["type"], f"{path}.")
        else:
            yield path
