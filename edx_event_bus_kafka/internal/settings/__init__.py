"""The settings: one declaration per setting, read into one frozen object; librdkafka client configs."""
