"""What operators run: group status, topic creation, schema checks against the registry."""
