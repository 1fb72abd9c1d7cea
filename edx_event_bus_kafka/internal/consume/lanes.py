"""Lanes: which messages may be processed now, and in what order, when several threads process them.

Each message goes to a lane: by key (``key`` ordering: the same key within a partition), by
partition (``partition`` ordering), or a lane of its own (``none``). A lane hands out its messages
one at a time, in the order they arrived: the next one only once the previous one is done. A
message waiting for a retry keeps its lane busy until the retry is due, so later messages of the
same key never overtake it, while other lanes go on. Thread-safe: the poll loop adds, workers take.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

ORDERINGS = ("key", "partition", "none")

TopicPartition = tuple[str, int]


@dataclass
class Work:
    """One message on its way through the workers."""

    message: Any
    headers: list[Any]
    partition: TopicPartition
    offset: int
    generation: int = 0  # of the partition's assignment (see ``frontier``)
    lane: Any = None
    attempts: int = 0
    taken: bool = field(default=False, repr=False)


class Lanes:
    """Messages grouped into lanes by the ordering mode; see the module docstring."""

    def __init__(self, ordering: str = "key"):
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {ORDERINGS}, not {ordering!r}")
        self.ordering = ordering
        self._lanes: dict[Any, deque[Work]] = {}
        self._ready: OrderedDict[Any, None] = OrderedDict()  # lanes whose first message may go now
        self._retries: list[tuple[float, int, Any]] = []  # (due, tiebreak, lane) heap
        self._tiebreak = itertools.count()
        self._unique = itertools.count()
        self._waiting = 0  # messages in lanes, taken or not
        self._taken = 0
        self._closed = False
        # One lock, two conditions: workers wait for work, the poll loop waits for running work to end;
        # notifying them apart keeps sixteen idle workers from waking at every finished message.
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)

    def lane_of(self, work: Work) -> Any:
        """The lane a message belongs to under this ordering."""
        if self.ordering == "key":
            return (work.partition, bytes(work.message.key() or b""))
        if self.ordering == "partition":
            return work.partition
        return next(self._unique)

    def add(self, work: Work) -> None:
        """Queue a message behind the earlier messages of its lane."""
        with self._condition:
            work.lane = self.lane_of(work)
            lane = self._lanes.setdefault(work.lane, deque())
            lane.append(work)
            self._waiting += 1
            if len(lane) == 1:
                self._ready[work.lane] = None
                self._condition.notify()

    def take(self, timeout: float) -> Work | None:
        """The next message that may be processed now, waiting up to ``timeout`` s; None if none or closed."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                if self._closed:
                    return None
                self._release_due_retries()
                if self._ready:
                    lane, _ = self._ready.popitem(last=False)
                    work = self._lanes[lane][0]
                    work.taken = True
                    self._taken += 1
                    return work
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if self._retries:
                    remaining = min(remaining, max(0.0, self._retries[0][0] - time.monotonic()))
                self._condition.wait(remaining)

    def finished(self, work: Work) -> None:
        """The message is done (processed, dead-lettered or skipped): its lane moves on."""
        with self._lock:
            self._taken -= 1
            work.taken = False
            self._idle.notify_all()
            lane = self._lanes.get(work.lane)
            if not lane or lane[0] is not work:
                return  # its partition was dropped meanwhile
            lane.popleft()
            self._waiting -= 1
            if lane:
                self._ready[work.lane] = None
                self._condition.notify()
            else:
                del self._lanes[work.lane]

    def retry_later(self, work: Work, delay: float) -> None:
        """Give the message back to its lane, due again in ``delay`` s; the lane waits for it."""
        with self._lock:
            self._taken -= 1
            work.taken = False
            self._idle.notify_all()
            lane = self._lanes.get(work.lane)
            if lane and lane[0] is work:
                heapq.heappush(self._retries, (time.monotonic() + delay, next(self._tiebreak), work.lane))
                self._condition.notify()  # a waiting worker recomputes how long to sleep

    def drop_partitions(self, partitions: set[TopicPartition]) -> list[Work]:
        """Remove the messages of ``partitions`` not being processed now; returns those still being processed."""
        with self._condition:
            still_running: list[Work] = []
            for lane_id in [lane_id for lane_id, lane in self._lanes.items() if lane[0].partition in partitions]:
                lane = self._lanes.pop(lane_id)
                self._ready.pop(lane_id, None)
                self._waiting -= len(lane)
                if lane[0].taken:
                    still_running.append(lane[0])
            self._retries = [entry for entry in self._retries if entry[2] in self._lanes]
            heapq.heapify(self._retries)
            return still_running

    def wait_until_idle(self, works: list[Work], timeout: float) -> bool:
        """Wait until none of ``works`` is being processed; False if some still are after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(work.taken for work in works):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def wait_until_nothing_taken(self, timeout: float) -> bool:
        """Wait until no message is being processed; False if some still are after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._taken > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    @property
    def waiting(self) -> int:
        """Messages in lanes (being processed, ready, or behind another one of their lane)."""
        with self._condition:
            return self._waiting

    def close(self) -> None:
        """Workers get nothing more; ``take`` returns None at once."""
        with self._lock:
            self._closed = True
            self._condition.notify_all()
            self._idle.notify_all()

    def _release_due_retries(self) -> None:
        now = time.monotonic()
        while self._retries and self._retries[0][0] <= now:
            _due, _, lane_id = heapq.heappop(self._retries)
            if lane_id in self._lanes:
                self._ready[lane_id] = None
