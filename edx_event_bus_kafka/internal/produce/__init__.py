"""Producing: ``KafkaEventProducer``, delivery modes, delivery reports, flushing at exit."""
