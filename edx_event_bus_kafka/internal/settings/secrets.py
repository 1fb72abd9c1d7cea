"""Keeping secrets out of reprs, logs and error messages.

A :class:`Secret` holds a password or API secret; only :meth:`Secret.reveal` gives the value, at
the one place a client is built. Option dicts passed to librdkafka or the registry client are
shown through :func:`redact_options`, and URLs through :func:`redact_url`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "********"

# librdkafka / schema registry option names whose values are credentials.
_SECRET_OPTION = re.compile(r"password|secret|credentials|user\.info|key\.pem|oauthbearer\.config|token", re.I)


class Secret:
    """A credential that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The real value; call only where a client is configured."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})" if self._value else "Secret('')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Secret values cannot be pickled")


def is_secret_option(name: str) -> bool:
    """Whether a librdkafka or registry option name holds a credential."""
    return bool(_SECRET_OPTION.search(name))


def redact_options(options: Mapping[Any, Any]) -> dict[Any, Any]:
    """A copy of an option dict that is safe to log."""
    return {key: _redact_option(str(key), value) for key, value in options.items()}


def _redact_option(name: str, value: Any) -> Any:
    if is_secret_option(name) and value:
        return MASK
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, Mapping):
        return redact_options(value)
    return value


def redact_url(value: str) -> str:
    """Hide the password of ``scheme://user:password@host`` URLs."""
    return re.sub(r"(://[^:/@\s]+):[^@/\s]*@", rf"\1:{MASK}@", value)
