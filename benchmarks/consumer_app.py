"""The tiny Django app of the consumer benchmark: a receiver that times a ``consume_events`` process.

``benchmarks/producer_consumer.py`` copies this file, alone, into a temporary directory next to the settings
module it writes, and starts ``consume_events`` of one implementation (ours, or openedx-events'
command driving the reference 6.x) with that directory on its python path. It imports nothing from
this repository, so it runs the same in our venv and in ``.venv-reference-pyXY``.

Everything it needs comes from the ``BENCH_CONSUMER`` setting:

* ``implementation``: ``"ours"`` or ``"reference"``;
* ``events``: N, the number of events the topic holds;
* ``result_file``: where the timings go (JSON lines, flushed at once);
* ``client_options``: for the reference only, the librdkafka options it has no setting for (short
  session timeout and fetch wait for the embedded broker, ``auto.offset.reset=earliest``), added
  to its consumer config by wrapping ``load_common_settings`` as ``tests/support/reference_script.py``
  does; ours gets the same options through ``EVENT_BUS_KAFKA_CONSUMER_CONFIG``;
* ``profile_file`` (optional): cProfile stats of the timed span are written there;
* ``work`` (optional): what the receiver does per event, ``{"sleep": S}`` (waits S seconds, like an
  I/O-bound receiver) or ``{"spin": S}`` (computes for S seconds, CPU-bound);
* ``check_order`` (optional): count events that arrive before an earlier event of their key
  (the key is the course; event n has user id n, so within a key ids must grow).

The receiver of ``COURSE_ENROLLMENT_CHANGED`` notes ``time.perf_counter()`` and
``time.process_time()`` at the first and at the N-th event, then stops the process the way each
implementation allows: ours gets SIGTERM (its worker finishes the current message and exits 0); the
reference's instance (captured when openedx-events builds it) gets ``_shut_down()``, its own way
out of the loop, or, should the instance not be reachable, the process ends with ``os._exit(0)``.
"""
from __future__ import annotations

import cProfile
import importlib
import json
import logging
import os
import sys
import threading
import time
from signal import SIGTERM
from typing import Any

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class Recorder:
    """Counts the events reaching the receiver and times the first to the N-th."""

    def __init__(self, options: dict[str, Any]):
        self.implementation = str(options["implementation"])
        self.expected = int(options["events"])
        self.result_file = str(options["result_file"])
        self.profile_file = options.get("profile_file")
        self.client_options_added: dict[str, Any] = {}
        self.consumer: Any = None  # the reference's KafkaEventConsumer, once openedx-events built it
        self.profiler: cProfile.Profile | None = None
        self.count = 0
        self.event_ids: set[Any] = set()
        self.first_wall = 0.0
        self.first_cpu = 0.0
        self.finished = False
        self.work: dict[str, float] = dict(options.get("work") or {})
        self.check_order = bool(options.get("check_order"))
        self.last_by_key: dict[str, int] = {}
        self.order_violations = 0
        self._lock = threading.Lock()  # receivers may run in several worker threads

    def receive(self, metadata: Any, enrollment: Any = None) -> None:
        """Do the configured work, count the event; time the first and the N-th (CPU time is read only then)."""
        if "sleep" in self.work:
            time.sleep(self.work["sleep"])
        elif "spin" in self.work:
            until = time.perf_counter() + self.work["spin"]
            while time.perf_counter() < until:
                pass
        with self._lock:
            self._count(metadata, enrollment)

    def _count(self, metadata: Any, enrollment: Any) -> None:
        wall = time.perf_counter()
        if self.finished:
            return
        if self.check_order and enrollment is not None:
            key, number = str(enrollment.course.course_key), int(enrollment.user.id)
            if number < self.last_by_key.get(key, -1):
                self.order_violations += 1
            self.last_by_key[key] = number
        self.count += 1
        if metadata is not None:
            self.event_ids.add(metadata.id)
        if self.count == 1:
            self.first_wall, self.first_cpu = wall, time.process_time()
            self._write({"stage": "first", "t_first": wall, "cpu_first": self.first_cpu})
            if self.profile_file:
                self.profiler = cProfile.Profile()
                self.profiler.enable()
        if self.count >= self.expected:
            cpu = time.process_time()
            self.finished = True
            if self.profiler is not None:
                self.profiler.disable()
                self.profiler.dump_stats(str(self.profile_file))
            self._write(self._result(wall, cpu))
            self._stop()

    def _result(self, wall: float, cpu: float) -> dict[str, Any]:
        import edx_event_bus_kafka

        return {
            "stage": "last",
            "implementation": self.implementation,
            "received": self.count,
            "distinct_event_ids": len(self.event_ids),
            "t_first": self.first_wall,
            "t_last": wall,
            "cpu_first": self.first_cpu,
            "cpu_last": cpu,
            "version": getattr(edx_event_bus_kafka, "__version__", None),
            "package_file": edx_event_bus_kafka.__file__,
            "commands": sorted(name for name in sys.modules if name.endswith(".management.commands.consume_events")),
            "consumer_class": f"{type(self.consumer).__module__}.{type(self.consumer).__qualname__}"
            if self.consumer is not None else None,
            "client_options_added": self.client_options_added,
            "sys_path": list(sys.path),
            "python": sys.executable,
            "stopped_by": self._stop_method(),
            "profiled": self.profiler is not None,
            "order_violations": self.order_violations if self.check_order else None,
            "threads": threading.active_count(),
        }

    def _stop_method(self) -> str:
        if self.implementation == "ours":
            return "SIGTERM"
        return "_shut_down()" if hasattr(self.consumer, "_shut_down") else "os._exit(0)"

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.result_file, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
            out.flush()

    def _stop(self) -> None:
        method = self._stop_method()
        if method == "SIGTERM":
            os.kill(os.getpid(), SIGTERM)  # our worker finishes this message, commits, exits 0
        elif method == "_shut_down()":
            self.consumer._shut_down()  # the reference leaves its loop after this message
        else:
            logging.shutdown()
            os._exit(0)


_recorder: Recorder | None = None


def receive_enrollment_changed(sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
    """Receiver of COURSE_ENROLLMENT_CHANGED: a plain function, as a service's receivers usually are.

    (openedx-events pretty-prints every receiver's response after each event; a bound method's
    long repr would make that formatting slower than for a typical receiver, for both consumers.)
    """
    if _recorder is not None:
        _recorder.receive(kwargs.get("metadata"), kwargs.get("enrollment"))


def patch_reference(recorder: Recorder, client_options: dict[str, Any]) -> None:
    """Add the embedded broker's timing options to the reference's consumer config; capture its instance."""
    module: Any = importlib.import_module("edx_event_bus_kafka.internal.consumer")
    common_settings = module.load_common_settings

    def with_bench_options() -> Any:
        config = common_settings()
        if config is None:
            return None
        return {**config, **client_options}

    module.load_common_settings = with_bench_options
    recorder.client_options_added = dict(client_options)

    consumer_class = module.KafkaEventConsumer
    original_init = consumer_class.__init__

    def init_and_capture(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        recorder.consumer = self

    consumer_class.__init__ = init_and_capture


class BenchConsumerConfig(AppConfig):
    """Connects the timing receiver (and, for the reference, its consumer options) when Django starts."""

    name = "bench_consumer_app"
    label = "bench_consumer_app"
    verbose_name = "consumer benchmark receivers"

    def ready(self) -> None:
        """Connect the receiver; for the reference, also add its client options and capture its instance."""
        from django.conf import settings
        from openedx_events.learning.signals import COURSE_ENROLLMENT_CHANGED

        global _recorder  # noqa: PLW0603 -- one recorder per process, set once when Django starts

        options = dict(getattr(settings, "BENCH_CONSUMER"))  # noqa: B009 -- not in the stubs' Settings
        _recorder = Recorder(options)
        if _recorder.implementation == "reference":
            patch_reference(_recorder, dict(options.get("client_options") or {}))
        COURSE_ENROLLMENT_CHANGED.connect(receive_enrollment_changed, dispatch_uid="bench_consumer_receiver")
