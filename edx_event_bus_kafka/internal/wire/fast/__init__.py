"""Optional generated code for Avro encoding and decoding, byte-identical to the general path (see ADR 0008)."""
