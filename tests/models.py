"""A model for receivers with a database effect: one row per run of the effect receiver (no unique key).

Duplicated processing shows as two rows for one event id, a lost event as none.
"""
from django.db import models


class EventEffect(models.Model):
    """What the effect receiver (``tests.receivers.record_effect``) writes for each event it processes."""

    event_id = models.CharField(max_length=64, db_index=True)
    user_id = models.IntegerField()
    attempt = models.IntegerField(default=1)
    pid = models.IntegerField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "tests"

    def __str__(self) -> str:
        return f"EventEffect {self.event_id} (attempt {self.attempt}, pid {self.pid})"
