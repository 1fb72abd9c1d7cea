"""The small source builder shared by the generated Avro writers and readers.

Both generate one Python function per signal; this keeps the lines, the names the generated code
refers to (its globals) and fresh identifiers.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class FallBack(Exception):
    """The generated code met a value or byte it does not handle: use the reference path instead."""


class Unsupported(Exception):
    """The schema uses Avro that we do not generate code for."""


class SourceBuilder:
    """Lines of one generated function, and the globals they refer to."""

    def __init__(self, env: dict[str, Any]):
        self.lines: list[str] = []
        self.env: dict[str, Any] = {"FallBack": FallBack, **env}
        self.count = 0
        self.named: dict[str, Any] = {}
        self.open_records: set[str] = set()
        self.constants: dict[int, str] = {}

    def new(self, prefix: str) -> str:
        """A fresh identifier starting with ``prefix``."""
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, value: Any, prefix: str) -> str:
        """The global name under which the generated code sees ``value`` (one name per object)."""
        name = self.constants.get(id(value))
        if name is None:
            name = self.constants[id(value)] = self.new(prefix)
            self.env[name] = value
        return name

    def line(self, depth: int, text: str) -> None:
        """Append one line at indentation ``depth``."""
        self.lines.append("    " * depth + text)

    def compile(
        self, name: str, argument: str, setup: list[str], result: list[str], filename: str,
    ) -> Callable[..., Any]:
        """Compile ``def name(argument)`` from ``setup`` + the emitted lines + ``result``.

        Any exception in the generated code other than FallBack becomes FallBack, so callers only
        ever see that one and take the reference path. The source is kept as the docstring.
        """
        text = "\n".join([
            f"def {name}({argument}):",
            "    try:",
            *(f"        {line}" for line in setup),
            *self.lines,
            *(f"        {line}" for line in result),
            "    except FallBack:",
            "        raise",
            "    except Exception as exc:",
            "        raise FallBack(type(exc).__name__) from exc",
        ])
        namespace = dict(self.env)
        exec(compile(text, filename, "exec"), namespace)
        function: Callable[..., Any] = namespace[name]
        function.__doc__ = text  # the generated source, for debugging
        return function
