"""Validation of librdkafka option dicts passed through settings.

librdkafka itself is the authority on which options exist and which values they accept, so each
option is checked by building a throw-away client with just that option (no broker is contacted
because no ``bootstrap.servers`` is given). That costs well under a millisecond per option.
"""
from __future__ import annotations

from typing import Any

from .secrets import is_secret_option

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
    # Imported here so that reading settings does not load the C extension at Django start-up.
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    return {"producer": Producer, "consumer": Consumer, "admin": AdminClient}[kind]


def check_librdkafka_options(options: dict[str, Any], kind: str) -> list[str]:
    """Problems with a dict of librdkafka options for a client of ``kind``, one line each.

    Values of credential options are never included in the messages.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
    problems = []
    factory = _client_factory(kind)
    for name, value in options.items():
        if not isinstance(name, str):
            problems.append(f"option name {name!r} must be a string")
            continue
        if name in OWNED_OPTIONS[kind]:
            problems.append(f"option {name!r} cannot be set here: {OWNED_OPTIONS[kind][name]}")
            continue
        if not isinstance(value, (str, int, float, bool)) and not callable(value):
            shown = "of type " + type(value).__name__
            problems.append(f"option {name!r} must be a string, number, boolean or callback, not a value {shown}")
            continue
        problem = _check_one(factory, kind, name, value)
        if problem:
            problems.append(problem)
    return problems


def _check_one(factory: Any, kind: str, name: str, value: Any) -> str | None:
    config: dict[str, Any] = {name: value}
    if name != "log_level":
        config["log_level"] = 0  # silence "no bootstrap.servers" notices from the probe client
    if kind == "consumer":
        config["group.id"] = "edx-event-bus-kafka-settings-check"
    try:
        client = factory(config)
    except Exception as error:  # noqa: BLE001 -- librdkafka reports bad options as KafkaException/TypeError/ValueError
        shown = "'********'" if is_secret_option(name) else repr(value)
        detail = _describe(error) if not is_secret_option(name) else "librdkafka rejected it"
        return f"option {name!r}={shown} is not valid for a {kind}: {detail}"
    close = getattr(client, "close", None)
    if close is not None and kind == "consumer":
        close()
    return None


def _describe(error: Exception) -> str:
    kafka_error = error.args[0] if error.args else None
    describe = getattr(kafka_error, "str", None)
    text = describe() if callable(describe) else str(error)
    return str(text).strip()
