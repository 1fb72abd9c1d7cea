"""Several consume_events workers in one group on Apache Kafka, while events flow and a worker dies.

Three workers share a six-partition topic; one is killed with -9 mid-stream and a fourth joins. The
test proves that every event is processed, that per-key order holds, and that the only duplicates
are the killed worker's processed-but-uncommitted messages: on each of its partitions, the last
messages it processed, re-delivered from its last commit. Run with ``-s`` to see the measured
rebalance times and duplicate counts.
"""
from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from confluent_kafka import Producer
from openedx_events.data import EventsMetadata

from edx_event_bus_kafka.internal.wire.headers import headers_from_metadata
from edx_event_bus_kafka.internal.wire.serialization import encoder_for
from edx_event_bus_kafka.testing import GROUP_PROTOCOLS, wait_for
from tests.events import ENROLLMENT_KEY_FIELD, ENROLLMENT_SIGNAL, enrollment_event_data
from tests.receivers import read_log
from tests.support.kafka import read_messages
from tests.support.workers import Worker

pytestmark = [pytest.mark.integration, pytest.mark.apache_kafka]

EVENTS = 900
KEYS = 30
RATE_PER_SEC = 150


def consuming(worker: Worker) -> list[int]:
    """The partitions a worker consumes, from its latest '... consuming partitions [..]' log line."""
    lines = [line for line in worker.output().splitlines() if "consuming partitions [" in line]
    if not lines:
        return []
    listed = lines[-1].rsplit("consuming partitions [", 1)[1].split("]", 1)[0]
    return [int(p) for p in listed.split(",") if p.strip()]


def stream(bootstrap: str, topic: str, ids: dict[int, str], stop: threading.Event) -> None:
    """Produce EVENTS events at about RATE_PER_SEC; event ``n`` has key course K(n % KEYS) and user id n."""
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0, "linger.ms": 5})
    encoder = encoder_for(ENROLLMENT_SIGNAL, ENROLLMENT_KEY_FIELD, topic)
    started = time.monotonic()
    for number in range(EVENTS):
        if stop.is_set():
            break
        metadata = EventsMetadata(event_type=ENROLLMENT_SIGNAL.event_type)
        data = enrollment_event_data(number, course=f"course-v1:edX+K{number % KEYS}+2026")
        key, value = encoder.encode(data)
        headers: Any = headers_from_metadata(metadata)
        producer.produce(topic, key=key, value=value, headers=headers)
        ids[number] = str(metadata.id)
        producer.poll(0)
        delay = started + (number + 1) / RATE_PER_SEC - time.monotonic()
        if delay > 0:
            stop.wait(delay)
    assert producer.flush(15) == 0


def assert_duplicates_are_the_killed_workers_tail(
    done: list[dict[str, Any]], place: dict[str, tuple[int, int]], victim_pid: int, victim_partitions: list[int],
) -> set[str]:
    """The duplicates (returned) are the killed worker's last processed messages on each partition.

    First processed by the killed worker, and on each of its partitions exactly the tail of what it
    processed there: the messages after its last commit.
    """
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in done:
        by_id[entry["id"]].append(entry)
    duplicates = {event_id for event_id, entries in by_id.items() if len(entries) > 1}
    assert all(by_id[event_id][0]["pid"] == victim_pid for event_id in duplicates), "only the killed worker's"
    victim_offsets: dict[int, list[int]] = defaultdict(list)
    for entry in done:
        if entry["pid"] == victim_pid:
            partition, offset = place[entry["id"]]
            victim_offsets[partition].append(offset)
    duplicated_places = {place[event_id] for event_id in duplicates}
    for partition, offsets in victim_offsets.items():
        duplicated = sorted(o for o in offsets if (partition, o) in duplicated_places)
        assert duplicated == sorted(offsets)[len(offsets) - len(duplicated):], (partition, duplicated)
    assert set(victim_offsets) <= set(victim_partitions)
    return duplicates


def assert_per_key_order(done: list[dict[str, Any]], ids: dict[int, str]) -> None:
    """The first processing of each key's events follows the order they were sent in."""
    number_of = {event_id: number for number, event_id in ids.items()}
    seen: set[str] = set()
    by_key: dict[int, list[int]] = defaultdict(list)
    for entry in sorted(done, key=lambda e: e["time"]):
        if entry["id"] not in seen:
            seen.add(entry["id"])
            by_key[number_of[entry["id"]] % KEYS].append(number_of[entry["id"]])
    for key, numbers in by_key.items():
        assert numbers == sorted(numbers), (key, numbers)


@pytest.mark.parametrize("group_protocol", GROUP_PROTOCOLS)
def test_three_workers__one_killed_one_added__every_event_once_except_the_killed_workers_uncommitted(
    kafka_broker, tmp_path, group_protocol,
):
    """Kill -9 one of three workers mid-stream and add a fourth: nothing lost, per-key order, bounded duplicates."""
    bootstrap = kafka_broker.bootstrap_servers
    topic, group = f"group-{uuid.uuid4().hex[:6]}", f"workers-{uuid.uuid4().hex[:6]}"
    kafka_broker.create_topics([topic], partitions=6)
    settings = {"EVENT_BUS_KAFKA_CONSUMER_CONFIG": kafka_broker.consumer_config(group_protocol)}
    log = tmp_path / "received.jsonl"

    def worker(name: str) -> Worker:
        return Worker.consume_events(tmp_path, bootstrap, topic, group, name=name, log_path=log, settings=settings)

    workers = [worker(f"w{n}").start() for n in (1, 2, 3)]
    ids: dict[int, str] = {}
    stop_producing = threading.Event()
    producer = threading.Thread(target=stream, args=(bootstrap, topic, ids, stop_producing))
    try:
        wait_for(lambda: all(consuming(w) for w in workers)
                 and sorted(p for w in workers for p in consuming(w)) == list(range(6)),
                 timeout=60, what="three workers sharing six partitions")
        producer.start()
        victim = workers[0]
        assert victim.process is not None
        victim_pid = victim.process.pid
        victim.wait_for_entries(lambda e: sum(x["phase"] == "done" and x["pid"] == victim_pid for x in e) >= 60,
                                timeout=60, what="the first worker to process some events")
        victim_partitions = consuming(victim)
        victim.signal(signal.SIGKILL)
        killed_at = time.time()
        victim.wait(10)
        newcomer = worker("w4").start()
        newcomer_started = time.time()
        workers.append(newcomer)
        producer.join(timeout=60)
        wait_for(lambda: len({e["id"] for e in read_log(str(log)) if e["phase"] == "done"}) >= len(ids) == EVENTS,
                 timeout=120, interval=0.2, what=f"all {EVENTS} events to be processed")
        newcomer_assigned = consuming(newcomer)
    finally:
        stop_producing.set()
        producer.join(timeout=30)
        codes = [w.stop() for w in workers[1:]]
    assert codes == [0, 0, 0], [w.output()[-3000:] for w in workers[1:]]
    assert newcomer_assigned, "the fourth worker got partitions"

    done = [e for e in read_log(str(log)) if e["phase"] == "done"]
    assert {e["id"] for e in done} == set(ids.values()), "every event was processed"
    # Where each event lives, read back from the topic.
    place = {dict(m.headers())["ce_id"].decode(): (m.partition(), m.offset())
             for m in read_messages(bootstrap, topic, EVENTS, timeout=30)}
    assert len(place) == EVENTS
    duplicates = assert_duplicates_are_the_killed_workers_tail(done, place, victim_pid, victim_partitions)
    assert_per_key_order(done, ids)

    # Rebalance times, for the closing note: until another worker processed an event of a
    # partition the killed worker had, and until the newcomer processed its first event.
    victim_partition_ids = {event_id for event_id, (partition, _) in place.items() if partition in victim_partitions}
    taken_over = min(e["time"] for e in done if e["pid"] != victim_pid and e["id"] in victim_partition_ids
                     and e["time"] > killed_at)
    newcomer_first = min(e["time"] for e in done if e["pid"] == newcomer.process.pid)
    print(f"\n[{group_protocol}] {EVENTS} events, {len(duplicates)} duplicates (killed worker's uncommitted), "
          f"partitions of the killed worker processed again {taken_over - killed_at:.2f} s after the kill, "
          f"newcomer's first event {newcomer_first - newcomer_started:.2f} s after it started")
