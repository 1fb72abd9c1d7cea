"""The Django TestCase example of docs/how-to/test_events.rst, which includes this file from its second line."""
from django.test import TestCase
from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

from edx_event_bus_kafka.testing import capture_events, deliver_event
from tests.example_service import ROSTER, enroll, enrollment_data


class EnrollmentEventsTests(TestCase):
    def setUp(self):
        ROSTER.clear()

    def test_enrolling_publishes_the_enrollment(self):
        """Enrolling a learner publishes one enrollment event, keyed by the course."""
        with capture_events() as published:
            enroll(user_id=7, username="ada", course_key="course-v1:edX+DemoX+2026")

        (event,) = published.of_type(COURSE_ENROLLMENT_CHANGED)
        self.assertEqual(event.key, "course-v1:edX+DemoX+2026")
        self.assertEqual(event.data["enrollment"].user.id, 7)

    def test_the_event_is_published_once_the_transaction_commits(self):
        """With the on_commit delivery mode, nothing is published before the transaction commits."""
        with capture_events(delivery_mode="on_commit") as published:
            with self.captureOnCommitCallbacks(execute=True):
                enroll(user_id=7, username="ada", course_key="course-v1:edX+DemoX+2026")
                self.assertEqual(len(published), 0)
            self.assertEqual(len(published), 1)

    def test_an_enrollment_from_the_bus_goes_on_the_roster(self):
        """An enrollment that comes over the bus puts the learner on the course's roster."""
        deliver_event(COURSE_ENROLLMENT_CHANGED,
                      {"enrollment": enrollment_data(7, "ada", "course-v1:edX+DemoX+2026")})

        self.assertEqual(ROSTER["course-v1:edX+DemoX+2026"], {7})
