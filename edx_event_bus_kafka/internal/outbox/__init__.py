"""The transactional outbox: rows written in the caller's transaction, published by a relay or after commit."""
