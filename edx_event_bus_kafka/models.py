"""The transactional outbox table (delivery mode ``outbox``).

A row is written in the caller's database transaction instead of sending the event to Kafka; the
relay (``./manage.py relay_outbox``, or the producing process right after commit) publishes it and
marks it published. The event is stored as JSON of its Avro record and metadata, so a row never
depends on pickling or on the module paths of user code.
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
