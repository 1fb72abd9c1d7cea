"""Everything behind the public API, with no stability promise.

Each room is one step of the data flow:

- ``settings``: the typed settings object, one declaration per setting, librdkafka client configs.
- ``kafka``: the only place confluent-kafka clients are made; commits, seeking, refusals.
- ``wire``: CloudEvents headers, Avro schemas and the registry, encoding and decoding (``wire.fast``:
  the optional generated fast path).
- ``produce``: ``KafkaEventProducer``, delivery modes and reports, flushing at exit.
- ``consume``: ``KafkaEventConsumer``: the loop, the error policy, dispatch to receivers.
- ``dead_letters``: writing dead letters, reading and re-driving them.
- ``outbox``: the transactional outbox: writing rows, publishing them, the relay.
- ``inbox``: the consumers' inbox: each group runs an event's receivers once (deduplication), retention.
- ``operations``: status, topic creation, schema checks.
- ``runtime``: exit codes and signals, heartbeat, monitoring, audit lines, log hygiene.
"""
