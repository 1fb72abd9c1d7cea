"""The done frontier: per partition, the offset up to which every message is done.

With messages processed concurrently, a later message can finish before an earlier one. Kafka
keeps one committed offset per partition, so only the contiguous prefix of done messages may be
committed: the frontier is the offset after the last message of that prefix. A message that is
slow, retried or dead-lettered holds the frontier back until it is done; a crash then re-delivers
it and everything after it, never skips it.
"""
from __future__ import annotations

import threading
from collections import deque

TopicPartition = tuple[str, int]


class _Partition:
    __slots__ = ("done", "frontier", "generation", "pending")

    def __init__(self, generation: int) -> None:
        self.generation = generation  # which assignment of the partition this is
        self.pending: deque[int] = deque()  # offsets received and not yet below the frontier, in order
        self.done: set[int] = set()  # offsets in ``pending`` that are done
        self.frontier: int | None = None  # the offset to commit (after the last contiguous done one)


class DoneFrontier:
    """Offsets received and done, per partition; thread-safe (workers mark, the poll loop commits).

    Offsets of one partition must be added in increasing order, as a consumer receives them. Each
    assignment of a partition is a new generation: a message received under an earlier one (still
    running when its partition was revoked, then assigned back) never counts as done in the new one.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._changed: set[TopicPartition] = set()
        self._generations = 0
        self._lock = threading.Lock()

    def received(self, partition: TopicPartition, offset: int) -> int:
        """A message was handed to the workers; it holds the frontier back until it is done.

        Returns the generation to pass to :meth:`done`.
        """
        with self._lock:
            state = self._partitions.get(partition)
            if state is None:
                self._generations += 1
                state = self._partitions[partition] = _Partition(self._generations)
            state.pending.append(offset)
            return state.generation

    def done(self, partition: TopicPartition, offset: int, generation: int) -> bool:
        """Mark a message done; False if its partition was forgotten (revoked) meanwhile: never commit it."""
        with self._lock:
            state = self._partitions.get(partition)
            if state is None or state.generation != generation:
                return False
            state.done.add(offset)
            advanced = False
            while state.pending and state.pending[0] in state.done:
                first = state.pending.popleft()
                state.done.discard(first)
                state.frontier = first + 1
                advanced = True
            if advanced:
                self._changed.add(partition)
            return True

    def has_changes(self) -> bool:
        """Whether some partition's frontier moved since the last :meth:`commits`."""
        with self._lock:
            return bool(self._changed)

    def commits(self, *, only_changed: bool = True) -> dict[TopicPartition, int]:
        """The frontier of each partition (that moved since the last call, by default)."""
        with self._lock:
            wanted = self._changed if only_changed else set(self._partitions)
            found = {tp: state.frontier for tp in wanted
                     if (state := self._partitions.get(tp)) is not None and state.frontier is not None}
            self._changed = set()
            return found

    def frontier(self, partition: TopicPartition) -> int | None:
        """The committable offset of one partition, or None when nothing of it is done yet."""
        with self._lock:
            state = self._partitions.get(partition)
            return None if state is None else state.frontier

    def in_flight(self, partition: TopicPartition | None = None) -> int:
        """Messages received and not yet below the frontier (of one partition, or all)."""
        with self._lock:
            if partition is not None:
                state = self._partitions.get(partition)
                return 0 if state is None else len(state.pending)
            return sum(len(state.pending) for state in self._partitions.values())

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Drop partitions no longer assigned: later ``done`` marks for them are ignored."""
        with self._lock:
            for partition in partitions:
                self._partitions.pop(partition, None)
                self._changed.discard(partition)
