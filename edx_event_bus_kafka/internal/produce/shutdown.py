"""Flushing buffered events when the process ends: at normal exit (atexit) and on SIGTERM.

The SIGTERM handler is chained: it flushes, then hands the signal to whatever handler was installed
before it (a web server's graceful shutdown, say), or, if that was the default action, restores the
default and re-raises the signal so the process still terminates with the usual status.
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_flushers: list[Callable[[], Any]] = []
_lock = threading.Lock()
_sigterm_installed = False


def _flush_all() -> None:
    with _lock:
        flushers = list(_flushers)
    for flush in flushers:
        try:
            flush()
        except Exception:
            logger.exception("Error flushing the event bus producer at shutdown")


def register_flush(flush: Callable[[], Any], *, on_sigterm: bool) -> None:
    """Run ``flush`` at interpreter exit, and on SIGTERM when ``on_sigterm`` and we are in the main thread."""
    with _lock:
        first = not _flushers
        _flushers.append(flush)
    if first:
        atexit.register(_flush_all)
    if on_sigterm:
        _install_sigterm_handler()


def unregister_flush(flush: Callable[[], Any]) -> None:
    """Stop flushing ``flush`` at exit (its producer was closed)."""
    with _lock:
        if flush in _flushers:
            _flushers.remove(flush)


def _install_sigterm_handler() -> None:
    global _sigterm_installed  # noqa: PLW0603 -- one handler per process
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def flush_then_continue(signum: int, frame: Any) -> None:
        _flush_all()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        # SIG_IGN: the host chose to ignore SIGTERM; we only flushed.

    try:
        signal.signal(signal.SIGTERM, flush_then_continue)
    except ValueError:  # not allowed here (embedded interpreter, odd thread state)
        return
    _sigterm_installed = True


def reset_for_tests() -> None:
    """Forget registered flushers (tests create and drop producers)."""
    with _lock:
        _flushers.clear()
