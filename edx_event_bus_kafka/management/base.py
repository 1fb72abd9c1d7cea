"""What our management commands share: readable help, one-line errors, and Ctrl-C without a traceback.

A user mistake or an unreachable service ends a command with one ``CommandError`` line (status 1)
naming what to check, never a traceback; Ctrl-C ends it with status 130, as shells expect.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, DjangoHelpFormatter

#: Exit status after Ctrl-C (128 + SIGINT), as shells report an interrupted program.
EXIT_INTERRUPTED = 130


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the description's line breaks kept."""


class EventBusCommand(BaseCommand):
    """Base of our commands. ``needs_broker``: refuse at once, in one line, when no broker is set."""

    needs_broker = False

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """Django's parser, with the formatter that keeps the description's line breaks."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = _HelpFormatter
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        """Django's, plus Ctrl-C: a short line and status 130 instead of a ``KeyboardInterrupt`` traceback."""
        try:
            super().run_from_argv(argv)
        except KeyboardInterrupt:
            self.stderr.write("Interrupted")
            sys.exit(EXIT_INTERRUPTED)

    def execute(self, *args: Any, **options: Any) -> Any:
        """Django's, with a missing broker setting and raw Kafka client errors turned into one-line errors."""
        from confluent_kafka import KafkaException

        if self.needs_broker:
            from edx_event_bus_kafka.internal.errors import ConfigurationError
            from edx_event_bus_kafka.internal.settings.declarations import get_settings

            try:
                configured = get_settings().bootstrap_servers
            except ConfigurationError as error:
                raise CommandError(str(error)) from error
            if not configured:
                raise CommandError("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS is not set: there is no broker to ask")
        try:
            return super().execute(*args, **options)
        except KafkaException as error:
            detail = error.args[0] if error.args else error
            text = detail.str() if hasattr(detail, "str") else str(detail)
            raise CommandError(f"Kafka client error: {text}; check EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS and that the "
                               "brokers are reachable") from error


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def apply_log_level(level: str | None) -> None:
    """``--log-level``: our loggers at ``level``; with no handler configured (a stock project), one to stderr."""
    if level is None:
        return
    ours = logging.getLogger("edx_event_bus_kafka")
    ours.setLevel(level)
    if not ours.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0 (a negative timeout or age makes no sense)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value
