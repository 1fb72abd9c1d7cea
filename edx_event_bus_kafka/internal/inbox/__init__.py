"""The inbox: each consumer group processes an event once (``EVENT_BUS_KAFKA_CONSUMER_DEDUPLICATION``)."""
