"""A tiny service for the how-to's examples: it publishes enrollments, and keeps a roster from the bus.

In a real service ``enroll`` is a view or an API, and the receiver is connected when its app is ready.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from django.dispatch import receiver
from opaque_keys.edx.keys import CourseKey
from openedx_events.learning.data import CourseData, CourseEnrollmentData, UserData, UserPersonalData
from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

#: Who is enrolled where, as learned from the event bus: course key -> user ids.
ROSTER: dict[str, set[int]] = defaultdict(set)


def enrollment_data(user_id: int, username: str, course_key: str) -> CourseEnrollmentData:
    """The enrollment of ``username`` in ``course_key``."""
    return CourseEnrollmentData(
        user=UserData(id=user_id, is_active=True,
                      pii=UserPersonalData(username=username, email=f"{username}@example.com", name=username)),
        course=CourseData(course_key=CourseKey.from_string(course_key)),
        mode="audit", is_active=True, creation_date=datetime.now(UTC),
    )


def enroll(user_id: int, username: str, course_key: str) -> None:
    """Enroll a learner; the event bus publishes COURSE_ENROLLMENT_CHANGED (see EVENT_BUS_PRODUCER_CONFIG)."""
    COURSE_ENROLLMENT_CHANGED.send_event(enrollment=enrollment_data(user_id, username, course_key))


@receiver(COURSE_ENROLLMENT_CHANGED)
def add_to_roster(sender: Any, enrollment: CourseEnrollmentData, from_event_bus: bool = False,
                  **kwargs: Any) -> None:
    """Enrollments that come from the bus (other services) go on the roster."""
    if from_event_bus:
        ROSTER[str(enrollment.course.course_key)].add(enrollment.user.id)
