"""The message format: CloudEvents headers, Avro schemas and the schema registry, encoding and decoding."""
