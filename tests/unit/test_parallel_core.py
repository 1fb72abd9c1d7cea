"""The pieces of parallel consumption that hold no thread of their own: the done frontier and the lanes."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from edx_event_bus_kafka.internal.consume.frontier import DoneFrontier
from edx_event_bus_kafka.internal.consume.lanes import Lanes, Work

TP = ("topic", 0)


def work(offset: int, key: bytes | None = b"k", partition: tuple[str, int] = TP) -> Work:
    return Work(message=SimpleNamespace(key=lambda: key), headers=[], partition=partition, offset=offset)


def test_frontier__a_slow_early_message_holds_the_commit_back():
    """Offsets 10-14 received; 11-14 done first: nothing is committable until 10 is, then 15."""
    frontier = DoneFrontier()
    generations = {frontier.received(TP, offset) for offset in range(10, 15)}
    (generation,) = generations  # one assignment, one generation
    for offset in (11, 12, 13, 14):
        frontier.done(TP, offset, generation)
    assert frontier.commits() == {} and frontier.frontier(TP) is None
    frontier.done(TP, 10, generation)
    assert frontier.commits() == {TP: 15}
    assert frontier.commits() == {}  # reported once per move
    assert frontier.in_flight() == 0


def test_frontier__gaps_advance_only_to_the_first_undone():
    """Done: 0, 1, 3. The frontier is 2 (after 1); 3 waits for 2."""
    frontier = DoneFrontier()
    (generation,) = {frontier.received(TP, offset) for offset in range(4)}
    for offset in (0, 1, 3):
        frontier.done(TP, offset, generation)
    assert frontier.commits() == {TP: 2}
    assert frontier.in_flight(TP) == 2


def test_frontier__a_forgotten_partition_is_never_committed():
    """After a revocation the partition is forgotten: a late done mark is refused and commits nothing."""
    frontier = DoneFrontier()
    old = frontier.received(TP, 5)
    frontier.forget([TP])
    assert frontier.done(TP, 5, old) is False
    assert frontier.commits(only_changed=False) == {}


def test_frontier__a_message_of_an_earlier_assignment_does_not_count_in_the_next():
    """Revoked while offset 5 ran, then assigned back and 5 re-delivered: the old run's done mark is refused."""
    frontier = DoneFrontier()
    old = frontier.received(TP, 5)
    frontier.forget([TP])
    new = frontier.received(TP, 5)
    assert frontier.done(TP, 5, old) is False and frontier.frontier(TP) is None
    assert frontier.done(TP, 5, new) is True and frontier.frontier(TP) == 6


def test_lanes__same_key_one_at_a_time_in_order_other_keys_meanwhile():
    """Key ordering: a's second message waits for the first; b goes at once."""
    lanes = Lanes("key")
    a1, a2, b1 = work(0, b"a"), work(1, b"a"), work(2, b"b")
    for item in (a1, a2, b1):
        lanes.add(item)
    assert lanes.take(0) is a1
    assert lanes.take(0) is b1
    assert lanes.take(0) is None  # a2 is behind a1
    lanes.finished(a1)
    assert lanes.take(0) is a2


def test_lanes__partition_ordering_serialises_a_partition_none_ordering_nothing():
    """Partition ordering: one at a time per partition. No ordering: everything at once."""
    by_partition = Lanes("partition")
    for item in (work(0, b"a"), work(1, b"b")):
        by_partition.add(item)
    assert by_partition.take(0) is not None and by_partition.take(0) is None
    unordered = Lanes("none")
    items = [work(offset) for offset in range(3)]
    for item in items:
        unordered.add(item)
    assert [unordered.take(0) for _ in items] == items


def test_lanes__a_retry_blocks_only_its_own_key_until_it_is_due():
    """A message under retry keeps later messages of its key back; another key proceeds meanwhile."""
    lanes = Lanes("key")
    a1, a2, b1 = work(0, b"a"), work(1, b"a"), work(2, b"b")
    for item in (a1, a2, b1):
        lanes.add(item)
    assert lanes.take(0) is a1
    lanes.retry_later(a1, delay=0.3)
    assert lanes.take(0) is b1
    assert lanes.take(0) is None  # a1 not due yet, a2 behind it
    assert lanes.take(2.0) is a1  # waits for the retry to be due, not for a2
    lanes.finished(a1)
    assert lanes.take(0) is a2


def test_lanes__dropping_a_partition_returns_what_is_still_running_and_forgets_the_rest():
    """A revoked partition's queued messages are dropped; the running one is reported and may finish."""
    lanes = Lanes("key")
    other = ("topic", 1)
    running, queued, elsewhere = work(0, b"a"), work(1, b"a"), work(0, b"a", partition=other)
    for item in (running, queued, elsewhere):
        lanes.add(item)
    assert lanes.take(0) is running
    assert lanes.drop_partitions({TP}) == [running]
    assert lanes.waiting == 1
    assert not lanes.wait_until_idle([running], timeout=0.05)  # still running
    lanes.finished(running)  # finishing after the drop is harmless
    assert lanes.wait_until_idle([running], timeout=0)
    assert lanes.take(0) is elsewhere


def test_lanes__close_wakes_waiting_workers():
    """A worker blocked in take() returns None as soon as the lanes close."""
    lanes = Lanes("key")
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(lanes.take(30)))
    thread.start()
    lanes.close()
    thread.join(timeout=5)
    assert got == [None] and not thread.is_alive()


def test_lanes__unknown_ordering_is_refused():
    """Only key, partition and none exist."""
    with pytest.raises(ValueError, match="ordering"):
        Lanes("random")
