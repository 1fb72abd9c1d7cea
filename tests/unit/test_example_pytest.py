"""The pytest example of docs/how-to/test_events.rst, which includes this file from its second line."""
import pytest
from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

from edx_event_bus_kafka.testing import deliver_event
from tests.example_service import ROSTER, enroll, enrollment_data


@pytest.fixture(autouse=True)
def empty_roster():
    ROSTER.clear()


def test_enrolling_publishes_the_enrollment(published_events):
    """Enrolling a learner publishes one enrollment event, keyed by the course."""
    enroll(user_id=7, username="ada", course_key="course-v1:edX+DemoX+2026")

    (event,) = published_events.of_type(COURSE_ENROLLMENT_CHANGED)
    assert event.topic == "learning-course-enrollment"
    assert event.key == "course-v1:edX+DemoX+2026"
    assert event.data["enrollment"].user.pii.username == "ada"
    assert event.metadata.event_type == COURSE_ENROLLMENT_CHANGED.event_type


def test_an_enrollment_from_the_bus_goes_on_the_roster():
    """An enrollment that comes over the bus puts the learner on the course's roster."""
    deliver_event(COURSE_ENROLLMENT_CHANGED,
                  {"enrollment": enrollment_data(7, "ada", "course-v1:edX+DemoX+2026")})

    assert ROSTER["course-v1:edX+DemoX+2026"] == {7}
