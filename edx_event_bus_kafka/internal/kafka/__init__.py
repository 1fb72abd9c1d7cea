"""Kafka clients and what is done with them.

``clients`` is the only place clients are made (and where the rebuild-after-fatal and
produce-and-wait rules live), ``protocols`` names the calls we make on them; then commits,
seeking by time, reading a topic to its end, and telling a refusing broker from an unreachable one.
"""
