"""How each setting's raw value is checked and converted: one parser per kind of value.

A parser takes the value from Django settings and returns the typed one, or raises
:class:`~edx_event_bus_kafka.internal.errors.InvalidSetting` with a message that says what is
wrong and how to fix it (the setting's name and the value are added by the reader).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from edx_event_bus_kafka.internal.errors import InvalidSetting
from edx_event_bus_kafka.internal.settings.librdkafka_options import check_librdkafka_options
from edx_event_bus_kafka.internal.settings.secrets import Secret

Parser = Callable[[Any], Any]


def optional_text(value: Any) -> str | None:
    """A string, or None for None or ''."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidSetting("must be a string or None")
    return value


def text(value: Any) -> str:
    """A string ('' for None)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidSetting("must be a string")
    return value


def optional_secret(value: Any) -> Secret | None:
    """A :class:`Secret`, or None when unset or empty."""
    text = optional_text(value)
    return Secret(text) if text else None


def secret(value: Any) -> Secret:
    """A :class:`Secret` (empty when unset)."""
    return Secret(text(value))


def flag(value: Any) -> bool:
    """True or False, and nothing that merely looks like one."""
    if not isinstance(value, bool):
        raise InvalidSetting("must be True or False (a string such as 'false' would count as true)")
    return value


def number(*, minimum: float, inclusive: bool) -> Parser:
    """A parser of seconds: a number above ``minimum`` (or equal to it when ``inclusive``)."""
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidSetting("must be a number of seconds")
        if value < minimum or (not inclusive and value == minimum):
            bound = f">= {minimum}" if inclusive else f"> {minimum}"
            raise InvalidSetting(f"must be {bound}")
        return float(value)
    return parse


def optional_count(none_means: str, *, minus_one_means: str | None = None) -> Parser:
    """A whole number >= 1, or None (meaning ``none_means``), or -1 when ``minus_one_means`` is given."""
    alternatives = f", -1 ({minus_one_means})" if minus_one_means else ""

    def parse(value: Any) -> int | None:
        if value is None or (minus_one_means and value == -1 and not isinstance(value, bool)):
            return None if value is None else -1
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidSetting(f"must be a whole number >= 1{alternatives}, or None for {none_means}")
        return value
    return parse


_HOST_PORT = re.compile(
    r"^(?:[A-Za-z_]+://)?"                      # optional listener protocol, e.g. SASL_SSL://
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"   # [IPv6] or hostname / IPv4
    r"(?::(?P<port>\d{1,5}))?$"
)


def bootstrap_servers(value: Any) -> str | None:
    """A comma-separated ``host:port`` list (optionally with ``PROTOCOL://``), spaces removed; None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        entries = list(value)
    elif isinstance(value, str):
        entries = value.split(",")
    else:
        raise InvalidSetting("must be a comma-separated string of host:port pairs, e.g. 'kafka1:9092,kafka2:9092'")
    cleaned = []
    for raw_entry in entries:
        entry = raw_entry.strip() if isinstance(raw_entry, str) else raw_entry
        match = _HOST_PORT.match(entry) if isinstance(entry, str) else None
        port = match.group("port") if match else None
        if not match or (port is not None and not 0 < int(port) < 65536):
            raise InvalidSetting(
                f"entry {entry!r} is not host:port; use a comma-separated list such as 'kafka1:9092,kafka2:9092'"
            )
        cleaned.append(entry)
    return ",".join(cleaned)


def registry_url(value: Any) -> str | None:
    """An http(s) URL, or None when unset."""
    text = optional_text(value)
    if text is None:
        return None
    urls = [part.strip() for part in text.split(",")]
    for url in urls:
        if not re.match(r"^(https?|mock)://[^/\s]+", url):
            raise InvalidSetting(
                "must be an http(s):// URL of a Confluent-compatible schema registry, e.g. 'https://registry:8081'"
            )
    return ",".join(urls)


DELIVERY_MODES = ("immediate", "on_commit", "outbox")


def delivery_mode(value: Any) -> str:
    """One of :data:`DELIVERY_MODES`."""
    if value not in DELIVERY_MODES:
        raise InvalidSetting(f"must be one of {', '.join(map(repr, DELIVERY_MODES))}")
    return str(value)


def delivery_mode_overrides(value: Any) -> dict[str, str]:
    """A dict of event type or topic to delivery mode."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSetting("must be a dict of event type or topic to delivery mode")
    for target, mode in value.items():
        if not isinstance(target, str) or mode not in DELIVERY_MODES:
            raise InvalidSetting(
                f"entry {target!r}: {mode!r} is not a delivery mode; use one of {', '.join(map(repr, DELIVERY_MODES))}"
            )
    return dict(value)


def database_alias(value: Any) -> str:
    """The alias of a database in ``DATABASES``."""
    from django.db import connections

    if not isinstance(value, str) or value not in connections.settings:
        raise InvalidSetting(f"must name a database in DATABASES ({', '.join(connections.settings)})")
    return value


def positive_int(value: Any) -> int:
    """A whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSetting("must be a whole number >= 1")
    return value


def choice(*choices: str) -> Parser:
    """A parser of one of ``choices``."""
    def parse(value: Any) -> str:
        if value not in choices:
            raise InvalidSetting(f"must be one of {', '.join(map(repr, choices))}")
        return str(value)
    return parse


def topic_template(value: Any) -> str:
    """A topic name template with ``{topic}`` (and usually ``{group}``)."""
    if not isinstance(value, str) or "{topic}" not in value:
        raise InvalidSetting("must be a string containing '{topic}' (and usually '{group}')")
    try:
        value.format(topic="t", group="g")
    except (KeyError, IndexError, ValueError) as error:
        raise InvalidSetting(f"may use only {{topic}} and {{group}} ({error})") from None
    return value


def librdkafka_options(*kinds: str) -> Parser:
    """A dict of librdkafka options for a client of each of ``kinds``.

    With one kind librdkafka checks the dict whole. The shared dict (several kinds) is only checked
    for owned options and value types here, and whole under each client's own dict in ``_read``.
    """
    def parse(value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise InvalidSetting("must be a dict of librdkafka option names to values")
        problems: list[str] = []
        for kind in kinds:
            problems += [p for p in check_librdkafka_options(dict(value), kind, whole=len(kinds) == 1)
                         if p not in problems]
        if problems:
            raise InvalidSetting("; ".join(problems))
        return dict(value)
    return parse
