"""capture_events and deliver_event: what they give back, and that they use the real encoding and decoding."""
from __future__ import annotations

import uuid

import pytest
from openedx_events.data import EventsMetadata
from openedx_events.learning.signals import SESSION_LOGIN_COMPLETED

from edx_event_bus_kafka import create_producer
from edx_event_bus_kafka.internal.errors import ReceiverError, UnusableMessageError
from edx_event_bus_kafka.internal.wire.records import event_data_to_record
from edx_event_bus_kafka.testing import capture_events, deliver_event
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.support.sample_events import sample_event_data
from tests.support.signals import assert_same_event_data


def login_data(user_id: int = 3) -> dict:
    return {"user": enrollment_event_data(user_id)["enrollment"].user}


def test_capture__decodes_type_topic_key_data_and_metadata_from_the_bytes(settings):
    """Each published event comes back decoded from our producer's bytes: type, topics, key, data, metadata."""
    settings.EVENT_BUS_TOPIC_PREFIX = "stage"
    metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
    with capture_events() as published:
        create_producer().send(signal=ENROLLMENT_SIGNAL, topic="enrollments", event_key_field=ENROLLMENT_KEY_FIELD,
                               event_data=enrollment_event_data(5), event_metadata=metadata)
    (event,) = published
    assert (event.event_type, event.topic, event.full_topic) == (ENROLLMENT_SIGNAL.event_type, "enrollments",
                                                                 "stage-enrollments")
    assert event.key == "course-v1:edX+DemoX+Demo_Course"
    assert event.data == enrollment_event_data(5) and event.metadata == metadata
    assert event.signal is ENROLLMENT_SIGNAL
    assert event.message.value()[:2] == b"\xc3\x01"  # the registry-less framing our producer wrote


def test_capture__with_a_schema_registry_the_key_is_read_by_schema_id(settings):
    """With a registry the bytes use the Confluent framing; key and data still come back decoded."""
    settings.EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = f"mock://{uuid.uuid4().hex}"
    with capture_events() as published:
        ENROLLMENT_SIGNAL.send_event(**enrollment_event_data(6))
    (event,) = published
    assert event.message.value()[:1] == b"\x00"
    assert event.key == "course-v1:edX+DemoX+Demo_Course" and event.data == enrollment_event_data(6)


def test_capture__filters_by_type_and_topic_and_grows_as_events_come():
    """of_type and on_topic select events; the view lists events published after it was made."""
    with capture_events() as published:
        assert len(published) == 0
        create_producer().send(signal=SESSION_LOGIN_COMPLETED, topic="logins", event_key_field="user.id",
                               event_data=login_data(3),
                               event_metadata=EventsMetadata(event_type=SESSION_LOGIN_COMPLETED.event_type))
        ENROLLMENT_SIGNAL.send_event(**enrollment_event_data(4))
        assert len(published) == 2
    (login,) = published.of_type(SESSION_LOGIN_COMPLETED)
    assert login.key == 3 and login.topic == "logins"
    assert [event.event_type for event in published.on_topic("learning-course-enrollment")] == [
        ENROLLMENT_SIGNAL.event_type]
    assert published.of_type(ENROLLMENT_SIGNAL.event_type) == published.on_topic("learning-course-enrollment")


def test_capture__delivery_mode_is_immediate_unless_the_configured_one_is_asked_for(settings):
    """capture_events() publishes immediately; capture_events(delivery_mode=None) keeps the configured mode."""
    settings.EVENT_BUS_KAFKA_DELIVERY_MODE = "outbox"
    with capture_events():
        assert create_producer().settings.delivery_mode_for(ENROLLMENT_SIGNAL.event_type, "t") == "immediate"
    with capture_events(delivery_mode=None):
        assert create_producer().settings.delivery_mode_for(ENROLLMENT_SIGNAL.event_type, "t") == "outbox"


@pytest.mark.parametrize("signal_name", ["COURSE_ENROLLMENT_CHANGED", "SESSION_LOGIN_COMPLETED"])
def test_deliver_event__receivers_get_the_decoded_event_marked_as_from_the_bus(signal_name):
    """Receivers get data equal to what was delivered, the metadata given, and from_event_bus=True."""
    from openedx_events.learning import signals

    signal = getattr(signals, signal_name)
    data = sample_event_data(signal, "all_set")
    metadata = EventsMetadata(event_type=signal.event_type)
    got: list[dict] = []

    def receiver(sender=None, **kwargs):
        got.append(kwargs)

    signal.connect(receiver)
    try:
        delivery = deliver_event(signal, data, metadata=metadata)
    finally:
        signal.disconnect(receiver)
    (call,) = got
    assert call["from_event_bus"] is True and call["metadata"] == metadata
    assert_same_event_data({name: call[name] for name in data}, data)
    assert delivery.receivers >= 1 and delivery.metadata == metadata
    assert event_data_to_record(delivery.data) == event_data_to_record(data)


def test_deliver_event__a_failing_receiver_raises_receiver_error_naming_it():
    """A receiver that raises makes deliver_event raise ReceiverError naming it, as the consumer would see it."""
    def broken_receiver(sender=None, **kwargs):
        raise RuntimeError("cannot enroll")

    ENROLLMENT_SIGNAL.connect(broken_receiver)
    try:
        with pytest.raises(ReceiverError, match=r"broken_receiver=RuntimeError\('cannot enroll'\)") as raised:
            deliver_event(ENROLLMENT_SIGNAL, enrollment_event_data(1))
    finally:
        ENROLLMENT_SIGNAL.disconnect(broken_receiver)
    assert [str(cause) for cause in raised.value.causes] == ["cannot enroll"]


def test_deliver_event__data_that_does_not_fit_the_signal_is_refused():
    """Data that the signal's schema cannot encode is refused, as our producer would refuse it."""
    with pytest.raises(UnusableMessageError, match=r"event data does not fit org\.openedx\.learning"):
        deliver_event(ENROLLMENT_SIGNAL, {"enrollment": "not an enrollment"})


def test_deliver_event__is_not_published_again():
    """An event delivered as from the bus is not re-published by openedx-events' producer handler."""
    with capture_events() as published:
        deliver_event(ENROLLMENT_SIGNAL, enrollment_event_data(2))
    assert len(published) == 0
