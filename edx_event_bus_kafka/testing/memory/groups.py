"""Consumer groups of the in-memory Kafka: who is in, who should own which partitions.

The target assignment is recomputed whenever a member joins or leaves, or a subscribed topic
appears, with the range assignor (librdkafka's default ``range,roundrobin`` picks range): per topic,
contiguous runs of partitions to members in joining order. Members take the change at their next
poll: a partition changes owner only after its old owner's revoke callback has returned, as the
broker's protocol guarantees.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cluster import ClusterState
    from .consumer import MemoryConsumer

TopicPartitionKey = tuple[str, int]


class Group:
    """One consumer group: its members, its generation and the target assignment."""

    def __init__(self, kafka: ClusterState, group_id: str):
        self.kafka = kafka
        self.group_id = group_id
        self.members: list[MemoryConsumer] = []
        self.generation = 0
        self.target: dict[int, set[TopicPartitionKey]] = {}  # id(member) -> partitions it should own
        self.owned: dict[int, set[TopicPartitionKey]] = {}  # id(member) -> partitions it owns now

    # All methods are called with the cluster lock held.

    def join(self, member: MemoryConsumer) -> None:
        """Add ``member`` (it owns nothing yet) and rebalance."""
        if member not in self.members:
            self.members.append(member)
            self.owned[id(member)] = set()
        self.rebalance()

    def leave(self, member: MemoryConsumer) -> set[TopicPartitionKey]:
        """Remove ``member``; the partitions it owned are free at once. Returns them."""
        if member not in self.members:
            return set()
        self.members.remove(member)
        self.target.pop(id(member), None)
        released = self.owned.pop(id(member), set())
        self.rebalance()
        return released

    def topic_created(self, topic: str) -> None:
        """A topic appeared: rebalance if a member subscribed to it."""
        if any(topic in member.subscription for member in self.members):
            self.rebalance()

    def rebalance(self) -> None:
        """A new generation with a new target assignment; members pick it up at their next poll."""
        self.generation += 1
        self.target = {id(member): set() for member in self.members}
        topics = sorted({topic for member in self.members for topic in member.subscription})
        for topic in topics:
            stored = self.kafka.topics.get(topic)
            if stored is None:
                continue  # not there yet: assigned once it is created
            takers = [member for member in self.members if topic in member.subscription]
            count, share = len(stored.partitions), divmod(len(stored.partitions), len(takers))
            start = 0
            for index, member in enumerate(takers):
                size = share[0] + (1 if index < share[1] else 0)
                self.target[id(member)].update((topic, number) for number in range(start, min(start + size, count)))
                start += size
        self.kafka.lock.notify_all()

    def target_of(self, member: MemoryConsumer) -> set[TopicPartitionKey]:
        """What ``member`` should own in this generation."""
        return set(self.target.get(id(member), set()))

    def owned_by_others(self, member: MemoryConsumer) -> set[TopicPartitionKey]:
        """Partitions other members still own."""
        return {key for other, keys in self.owned.items() if other != id(member) for key in keys}

    def set_owned(self, member: MemoryConsumer, keys: set[TopicPartitionKey]) -> None:
        """Record what ``member`` owns now; wakes members waiting for a partition to be released."""
        self.owned[id(member)] = set(keys)
        self.kafka.lock.notify_all()
