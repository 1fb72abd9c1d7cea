"""Consuming: ``KafkaEventConsumer``, its loop, the error policy, dispatch to receivers, clean state per message."""
