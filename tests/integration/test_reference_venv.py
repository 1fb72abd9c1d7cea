"""The reference virtualenv holds edx-event-bus-kafka 6.1.0 (not ours) and a working confluent-kafka."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.reference_venv import VENV_DIR, ensure_reference_venv

pytestmark = pytest.mark.integration

# -I (isolated mode): no current directory or PYTHONPATH on sys.path, so our package cannot shadow it.
# The reference reads Django settings at import time, so the probe configures empty ones first.
PROBE = (
    "import json; from django.conf import settings; settings.configure(); "
    "import confluent_kafka, edx_event_bus_kafka; "
    "print(json.dumps({'version': edx_event_bus_kafka.__version__, 'file': edx_event_bus_kafka.__file__, "
    "'confluent_kafka': confluent_kafka.version()[0]}))"
)


def test_reference_venv_has_the_reference_package(tmp_path):
    python = ensure_reference_venv()
    result = subprocess.run([str(python), "-I", "-c", PROBE], cwd=tmp_path, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["version"] == "6.1.0"
    assert probe["file"].startswith(str(VENV_DIR))
    assert probe["confluent_kafka"]
