"""Validation of librdkafka option dicts passed through settings.

librdkafka itself is the authority on which options exist and which values they accept, so a dict
is checked by building a throw-away client with all of its options together, as the real client
will see them (no broker is contacted because no ``bootstrap.servers`` is given): some options are
only valid in combination, such as ``security.protocol=SASL_SSL`` with its ``sasl.mechanism``, or
``session.timeout.ms`` with ``max.poll.interval.ms``. librdkafka's refusal names the offending
option. That costs well under a millisecond per client.
"""
from __future__ import annotations

from typing import Any

from edx_event_bus_kafka.internal.settings.secrets import is_secret_option

# Options the event bus owns; letting users override them would break our guarantees.
OWNED_OPTIONS: dict[str, dict[str, str]] = {
    "consumer": {
        "group.id": "the group comes from `consume_events -g`",
        "enable.auto.commit": "offsets are committed only after a message is done (at-least-once)",
        "enable.auto.offset.store": "offsets are stored only after a message is done (at-least-once)",
    },
    "producer": {},
    "admin": {},
}

_KINDS = ("producer", "consumer", "admin")


def _client_factory(kind: str) -> Any:
    # confluent-kafka's clients whatever factory is current: only librdkafka can judge its options.
    # Imported here so that reading settings does not load the C extension at Django start-up.
    from edx_event_bus_kafka.internal.kafka.clients import CONFLUENT

    return {"producer": CONFLUENT.producer, "consumer": CONFLUENT.consumer, "admin": CONFLUENT.admin}[kind]


def check_librdkafka_options(options: dict[str, Any], kind: str, *, base: dict[str, Any] | None = None,
                             whole: bool = True) -> list[str]:
    """Problems with a dict of librdkafka options for a client of ``kind``, one line each.

    ``base`` holds options the client also gets (another setting's dict), checked together with
    ``options``. ``whole=False`` skips asking librdkafka, for a dict that is never a client's whole
    configuration (it is checked later under each client's own dict). Values of credential options
    are never included in the messages.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
    problems = []
    for name, value in options.items():
        if not isinstance(name, str):
            problems.append(f"option name {name!r} must be a string")
        elif name in OWNED_OPTIONS[kind]:
            problems.append(f"option {name!r} cannot be set here: {OWNED_OPTIONS[kind][name]}")
        elif not isinstance(value, (str, int, float, bool)) and not callable(value):
            shown = "of type " + type(value).__name__
            problems.append(f"option {name!r} must be a string, number, boolean or callback, not a value {shown}")
    if problems or not whole:
        return problems
    combined = {**(base or {}), **options}
    refused = _refusal(_client_factory(kind), kind, combined)
    return [] if refused is None else [f"is not valid for a {kind}: {_scrub(refused, combined)}"]


def _refusal(factory: Any, kind: str, options: dict[str, Any]) -> str | None:
    """Why librdkafka refuses ``options`` for a client of ``kind``; None when it accepts them."""
    config: dict[str, Any] = dict(options)
    config.setdefault("log_level", 0)  # silence "no bootstrap.servers" notices from the probe client
    if kind == "consumer":
        config["group.id"] = "edx-event-bus-kafka-settings-check"
    try:
        client = factory(config)
    except Exception as error:  # noqa: BLE001 -- librdkafka reports bad options as KafkaException/TypeError/ValueError
        return _describe(error)
    close = getattr(client, "close", None)
    if close is not None and kind == "consumer":
        close()
    return None


def _scrub(text: str, options: dict[str, Any]) -> str:
    """``text`` without the value of any credential option (librdkafka quotes invalid values)."""
    for name, value in options.items():
        if is_secret_option(str(name)) and isinstance(value, str) and value:
            text = text.replace(value, "********")
    return text


def _describe(error: Exception) -> str:
    kafka_error = error.args[0] if error.args else None
    describe = getattr(kafka_error, "str", None)
    text = describe() if callable(describe) else str(error)
    return str(text).strip()
