"""What our management commands share."""
from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser, DjangoHelpFormatter


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the description's line breaks kept."""


class EventBusCommand(BaseCommand):
    """A command whose ``help`` keeps its line breaks, so the examples in it stay readable."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """Django's parser, with the formatter that keeps the description's line breaks."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = _HelpFormatter
        return parser
