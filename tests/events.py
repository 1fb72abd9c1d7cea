"""Sample openedx-events payloads shared by tests, the demo and the benchmark."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opaque_keys.edx.keys import CourseKey
from openedx_events.learning.data import CourseData, CourseEnrollmentData, UserData, UserPersonalData
from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

ENROLLMENT_SIGNAL = COURSE_ENROLLMENT_CHANGED
ENROLLMENT_KEY_FIELD = "enrollment.course.course_key"


def enrollment_event_data(number: int = 1, course: str = "course-v1:edX+DemoX+Demo_Course") -> dict[str, Any]:
    """The kwargs of one COURSE_ENROLLMENT_CHANGED event; ``number`` varies the user."""
    user = UserData(
        id=number,
        is_active=True,
        pii=UserPersonalData(
            username=f"learner{number}", email=f"learner{number}@example.com", name=f"Learner {number}"
        ),
    )
    return {
        "enrollment": CourseEnrollmentData(
            user=user,
            course=CourseData(course_key=CourseKey.from_string(course), display_name="Demonstration Course"),
            mode="audit",
            is_active=True,
            creation_date=datetime(2026, 11, 28, 12, 0, number % 60, tzinfo=UTC),
            created_by=None,
        )
    }
