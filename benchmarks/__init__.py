"""Benchmarks: commands that measure; not timed tests.

No threshold is asserted; figures are ratios against a baseline measured in the same run. Each runs
with one make target, on either broker (``BROKER=tansu`` by default, or ``BROKER=apache``):

- ``make bench``: ``producer_consumer.py``, our producer and ``consume_events`` against the reference
  6.x (``producer_worker.py`` and ``consumer_app.py`` run in their processes).
- ``make bench-latency``: ``latency.py``, send -> receiver latency at a steady rate, against bare
  librdkafka.
- ``make bench-outbox``: ``outbox.py``, outbox write rate, relay rate, commit -> consumer latency
  (``outbox_worker.py`` writes in its processes).

``common.py`` holds what they share.
"""
