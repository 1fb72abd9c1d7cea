"""The transactional outbox table (delivery mode ``outbox``) and the consumers' inbox table.

An outbox row is written in the caller's database transaction instead of sending the event to Kafka; the
relay (``./manage.py relay_outbox``, or the producing process right after commit) publishes it and
marks it published. The event is stored as JSON of its Avro record and metadata, so a row never
depends on pickling or on the module paths of user code.

An inbox row says that a consumer group has processed an event (``EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION``):
it is inserted in the transaction of the event's receivers, and its unique ``(consumer_group,
event_id)`` makes any later copy of the event a duplicate.
"""
from __future__ import annotations

from django.db import models


class OutboxEvent(models.Model):
    """One event waiting to be (or already) published to Kafka."""

    PENDING = "pending"
    PUBLISHED = "published"
    FAILED = "failed"  # can never be serialized: moved aside with its error, not retried
    STATUSES = ((PENDING, "pending"), (PUBLISHED, "published"), (FAILED, "failed"))

    id = models.BigAutoField(primary_key=True)
    created = models.DateTimeField(auto_now_add=True)
    topic = models.CharField(max_length=255, help_text="Topic without EVENT_BUS_TOPIC_PREFIX")
    event_type = models.CharField(max_length=255)
    event_key_field = models.CharField(max_length=255)
    event_id = models.CharField(max_length=64, db_index=True, help_text="ce_id of the event")
    event_data = models.TextField(help_text="JSON of the event's Avro record")
    event_metadata = models.TextField(help_text="JSON of the event's EventsMetadata")
    status = models.CharField(max_length=16, choices=STATUSES, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "edx_event_bus_kafka"
        indexes = [models.Index(fields=["status", "id"], name="outbox_status_id")]

    def __str__(self) -> str:
        return f"OutboxEvent {self.id} {self.event_type} {self.event_id} ({self.status})"


class InboxEvent(models.Model):
    """An event a consumer group has processed (its receivers' transaction committed)."""

    id = models.BigAutoField(primary_key=True)
    consumer_group = models.CharField(max_length=255)
    event_id = models.CharField(max_length=64, help_text="ce_id of the event")
    topic = models.CharField(max_length=255, help_text="Full topic of the copy that was processed")
    kafka_partition = models.IntegerField()
    kafka_offset = models.BigIntegerField()
    processed_at = models.DateTimeField(help_text="When its receivers ran; rows expire after the retention")

    class Meta:
        app_label = "edx_event_bus_kafka"
        constraints = [models.UniqueConstraint(fields=["consumer_group", "event_id"], name="inbox_group_event_id")]
        indexes = [models.Index(fields=["processed_at"], name="inbox_processed_at")]

    def __str__(self) -> str:
        where = f"{self.topic}:{self.kafka_partition}:{self.kafka_offset}"
        return f"InboxEvent {self.consumer_group} {self.event_id} ({where})"
