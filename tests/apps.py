"""The test app: receivers used by worker subprocess tests, and the model of their database effect."""
import os

from django.apps import AppConfig


class TestsConfig(AppConfig):
    name = "tests"
    label = "tests"

    def ready(self) -> None:
        """Connect the recording receiver only in worker subprocesses that ask for it."""
        if os.environ.get("TEST_RECEIVER_LOG"):
            from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

            from tests.receivers import record_event

            COURSE_ENROLLMENT_CHANGED.connect(record_event, dispatch_uid="tests.record_event")
        if os.environ.get("TEST_ARRIVAL_LOG"):
            from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

            from tests.receivers import record_arrival

            COURSE_ENROLLMENT_CHANGED.connect(record_arrival, dispatch_uid="tests.record_arrival")
        if os.environ.get("TEST_EFFECT_MODE"):
            from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

            from tests.receivers import record_effect

            COURSE_ENROLLMENT_CHANGED.connect(record_effect, dispatch_uid="tests.record_effect")
