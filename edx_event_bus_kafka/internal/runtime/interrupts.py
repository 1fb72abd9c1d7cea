"""Ctrl-C in the management commands, noticed even when a Kafka client call loses it.

confluent-kafka runs our Python callbacks (log lines, statistics, delivery reports) inside its
blocking calls, and turns a failed call into a ``KafkaException``. A ``KeyboardInterrupt`` raised
in such a callback, or while such a call fails, can be lost: the command then went on waiting for
its whole ``--timeout``, or reported the broker error and exited 1 (seen in CI under load). While
:func:`noticing_interrupts` is active, SIGINT is also recorded, so that waiting loops stop
(:func:`raise_if_interrupted`) and the command's exit says it was interrupted.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_received = threading.Event()


def _on_sigint(_signum: int, _frame: FrameType | None) -> None:
    _received.set()
    raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether SIGINT came while :func:`noticing_interrupts` was active."""
    return _received.is_set()


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if SIGINT came (a loop that waits on a Kafka client calls it)."""
    if _received.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def noticing_interrupts() -> Iterator[None]:
    """Within the block (main thread only), SIGINT raises ``KeyboardInterrupt`` as usual and is recorded."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield  # someone else handles SIGINT (a test runner, an embedding program): leave it alone
        return
    _received.clear()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _received.clear()  # a later client call in this process is not "interrupted"
