"""Parsers of the inbox settings: which groups and event types deduplicate, and the purge interval.

``EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION`` is ``False`` (no group deduplicates), ``True`` (every
group, every event type), or a dict of consumer group id to ``True``/``False`` or to a list of the
event types to deduplicate; a group that is not in the dict does not deduplicate. The parsed value
is a :class:`DeduplicationScope`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edx_event_bus_kafka.internal.errors import InvalidSetting
from edx_event_bus_kafka.internal.settings.parsers import Parser

#: Longest consumer group id and event type the inbox table stores (its column width).
MAX_NAME_LENGTH = 255

_SHAPE = ("must be False, True, or a dict of consumer group id to True, False or a list of event types, "
          "e.g. {'credentials-service': True, 'notes': ['org.openedx.learning.course.enrollment.changed.v1']}")


@dataclass(frozen=True)
class DeduplicationScope:
    """What deduplicates: every group (``everything``), or the groups in ``groups``.

    ``groups`` maps a group id to ``None`` (all its event types) or to the event types it deduplicates.
    """

    everything: bool = False
    groups: Mapping[str, frozenset[str] | None] = field(default_factory=dict)

    def event_types_for(self, group: str) -> frozenset[str] | None:
        """The event types ``group`` deduplicates; ``None`` means all of them (check :meth:`enabled_for` first)."""
        return None if self.everything else self.groups.get(group)

    def enabled_for(self, group: str) -> bool:
        """Whether ``group`` deduplicates any event type."""
        return self.everything or group in self.groups

    def covers(self, group: str, event_type: str) -> bool:
        """Whether events of ``event_type`` consumed in ``group`` are deduplicated."""
        if not self.enabled_for(group):
            return False
        types = self.event_types_for(group)
        return types is None or event_type in types

    def describe(self, group: str) -> str:
        """``on``, ``off``, or the event types, for status output and logs."""
        if not self.enabled_for(group):
            return "off"
        types = self.event_types_for(group)
        return "on" if types is None else "on for " + ", ".join(sorted(types))


def _event_types(group: str, value: Any) -> frozenset[str] | None:
    if value is True:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise InvalidSetting(f"entry {group!r}: {value!r} is not True, False or a list of event types; {_SHAPE}")
    types = frozenset(value)
    if not types:
        raise InvalidSetting(f"entry {group!r} lists no event type; use False to turn deduplication off")
    for event_type in sorted(types, key=repr):
        if not isinstance(event_type, str) or not event_type or len(event_type) > MAX_NAME_LENGTH:
            raise InvalidSetting(f"entry {group!r}: {event_type!r} is not an event type name (a non-empty "
                                 f"string of at most {MAX_NAME_LENGTH} characters)")
    return types


def consumer_deduplication(value: Any) -> DeduplicationScope:
    """Parse ``EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION`` (see the module docstring)."""
    if value is None or value is False:
        return DeduplicationScope()
    if value is True:
        return DeduplicationScope(everything=True)
    if not isinstance(value, Mapping):
        raise InvalidSetting(_SHAPE)
    groups: dict[str, frozenset[str] | None] = {}
    for group, wanted in value.items():
        if not isinstance(group, str) or not group or len(group) > MAX_NAME_LENGTH:
            raise InvalidSetting(f"key {group!r} is not a consumer group id (a non-empty string of at most "
                                 f"{MAX_NAME_LENGTH} characters); {_SHAPE}")
        if wanted is False:
            continue
        groups[group] = _event_types(group, wanted)
    return DeduplicationScope(groups=groups)


def optional_seconds(none_means: str) -> Parser:
    """A parser of a number of seconds > 0, or ``None`` (meaning ``none_means``)."""
    def parse(value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise InvalidSetting(f"must be a number of seconds > 0, or None for {none_means}")
        return float(value)
    return parse
