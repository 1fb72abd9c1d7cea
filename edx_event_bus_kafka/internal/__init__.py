"""Internal modules: no stability promise. Import public names from ``edx_event_bus_kafka``."""
