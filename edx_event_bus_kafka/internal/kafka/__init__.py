"""The only place confluent-kafka clients are made, and what is done with them: commits, seeking, refusals."""
