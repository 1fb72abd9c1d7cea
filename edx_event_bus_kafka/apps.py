"""Django application configuration."""
from django.apps import AppConfig


class EdxEventBusKafkaConfig(AppConfig):
    """The Kafka event bus app: registers the settings system checks."""

    name = "edx_event_bus_kafka"
    verbose_name = "Open edX event bus (Kafka)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks."""
        from . import checks  # noqa: F401 -- importing registers the system checks
