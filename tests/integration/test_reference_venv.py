"""The reference virtualenv holds the reference release meant for this Python, not ours, with confluent-kafka."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from tests.support.reference_venv import (
    REPO_ROOT,
    VENV_DIR,
    ensure_reference_venv,
    pinned_reference_version,
)

pytestmark = pytest.mark.integration

# -I (isolated mode): no current directory or PYTHONPATH on sys.path, so our package cannot shadow it.
# The reference reads Django settings at import time, so the probe configures empty ones first.
PROBE = (
    "import json, sys; from django.conf import settings; settings.configure(); "
    "import confluent_kafka, edx_event_bus_kafka; "
    "print(json.dumps({'version': edx_event_bus_kafka.__version__, 'file': edx_event_bus_kafka.__file__, "
    "'python': list(sys.version_info[:2]), 'confluent_kafka': confluent_kafka.version()[0]}))"
)


def _release_named_in_reference_in() -> str:
    """The edx-event-bus-kafka release requirements/reference.in names for this interpreter (markers applied)."""
    for line in (REPO_ROOT / "requirements" / "reference.in").read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text.startswith("edx-event-bus-kafka"):
            continue
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate():
            (specifier,) = requirement.specifier
            return specifier.version
    raise AssertionError("requirements/reference.in names no edx-event-bus-kafka release for this Python")


def test_reference_venv_has_the_reference_release_for_this_python(tmp_path):
    """The venv runs this Python with the release reference.in names for it (today 6.1.0 on 3.11, 6.2.0 on 3.12+)."""
    python = ensure_reference_venv()
    result = subprocess.run([str(python), "-I", "-c", PROBE], cwd=tmp_path, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["version"] == pinned_reference_version() == _release_named_in_reference_in()
    assert probe["python"] == list(sys.version_info[:2])
    assert probe["file"].startswith(str(VENV_DIR))
    assert probe["confluent_kafka"]
