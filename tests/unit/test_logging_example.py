"""The worked LOGGING setting of the logging how-to does what the page says, in a real process."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "how-to" / "logging.rst"

# Configures logging with the page's first python block, then logs as the event bus does.
SCRIPT = """
import logging, logging.config, sys
import django
django.setup()
namespace = {}
exec(sys.stdin.read(), namespace)
logging.config.dictConfig(namespace["LOGGING"])
from edx_event_bus_kafka.internal.runtime.audit import CONSUMED, CONSUMER_LOGGER, audit
consumer = logging.getLogger(CONSUMER_LOGGER)
consumer.info("Running consumer for full_topic=%r consumer_group=%r", "prod-user-login", "user-activity")
audit(consumer, CONSUMED, ("prod-user-login", 2, 1841, "3f1c2a9e", "key", 1795000000000))
logging.getLogger("edx_event_bus_kafka.librdkafka").info("FAIL [thrd:main]: an INFO line of librdkafka")
logging.getLogger("edx_event_bus_kafka.librdkafka").warning("FAIL [thrd:main]: a WARNING line of librdkafka")
"""


def test_logging_example__console_gets_the_bus_lines_and_the_audit_file_gets_the_audit_lines(tmp_path):
    """INFO lines reach standard error, audit lines only the audit file, librdkafka's only from WARNING up."""
    (block,) = re.findall(r"^\.\. code-block:: python\n\n((?:(?: {4}.*)?\n)+)", PAGE.read_text(encoding="utf-8"),
                          re.M)[:1]
    audit_file = tmp_path / "audit.log"
    code = re.sub(r"^ {4}", "", block, flags=re.M).replace("/var/log/user-activity/event-bus-audit.log",
                                                           str(audit_file))
    assert str(audit_file) in code
    done = subprocess.run([sys.executable, "-c", SCRIPT], input=code, cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": ""})
    assert done.returncode == 0, done.stderr
    console = done.stderr.splitlines()
    # "date time LEVEL pid name: message"
    assert [line.split(" ", 4)[-1] for line in console] == [
        "edx_event_bus_kafka.internal.consumer: Running consumer for full_topic='prod-user-login' "
        "consumer_group='user-activity'",
        "edx_event_bus_kafka.librdkafka: FAIL [thrd:main]: a WARNING line of librdkafka",
    ]
    audit_lines = audit_file.read_text(encoding="utf-8").splitlines()
    assert len(audit_lines) == 1
    assert "edx_event_bus_kafka.internal.consumer: Message received from Kafka: topic=prod-user-login, " \
           "partition=2, offset=1841, message_id=3f1c2a9e, key=key, event_timestamp_ms=1795000000000" in audit_lines[0]
