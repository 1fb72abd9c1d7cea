"""Ctrl-C in commands is noticed even when a Kafka client call swallows the KeyboardInterrupt."""
from __future__ import annotations

import io
import os
import signal

import pytest
from django.core.management.base import CommandError

from edx_event_bus_kafka.internal.runtime.interrupts import interrupted, noticing_interrupts, raise_if_interrupted
from edx_event_bus_kafka.management.base import EventBusCommand
from edx_event_bus_kafka.testing import wait_for


def sigint_swallowed() -> None:
    """SIGINT to this process, its KeyboardInterrupt lost as inside a client callback."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(interrupted, timeout=5, what="the SIGINT handler to run")  # at the next bytecode boundary
    except KeyboardInterrupt:
        pass


def test_a_swallowed_interrupt_is_still_noticed_by_the_waiting_loop_and_forgotten_after_the_block():
    before = signal.getsignal(signal.SIGINT)
    with noticing_interrupts():
        sigint_swallowed()
        assert interrupted()
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
    assert not interrupted() and signal.getsignal(signal.SIGINT) is before
    raise_if_interrupted()  # outside a command nothing is "interrupted"


class SwallowsThenFails(EventBusCommand):
    """What event_bus_status did under load: Ctrl-C lost in the client, then the client's error."""

    def handle(self, *args, **options):
        sigint_swallowed()
        raise CommandError("Kafka client error: Failed to get metadata: Local: Broker transport failure")


def test_a_command_whose_ctrl_c_became_a_client_error_exits_130_interrupted():
    command = SwallowsThenFails(stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(SystemExit) as exit_:
        command.run_from_argv(["manage.py", "swallows"])
    assert exit_.value.code == 130
    assert command.stderr._out.getvalue().strip().endswith("Interrupted")
    assert not interrupted()


class FailsAlone(EventBusCommand):
    def handle(self, *args, **options):
        raise CommandError("a plain failure")


def test_a_command_failing_without_ctrl_c_keeps_its_status():
    command = FailsAlone(stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(SystemExit) as exit_:
        command.run_from_argv(["manage.py", "fails"])
    assert exit_.value.code == 1
