"""The pytest example of the local broker how-to passes as it is written, with our plugin's fixtures."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "how-to" / "local_broker.rst"


def test_local_broker_example__passes_in_its_own_pytest_run(tmp_path):
    """The page's test, copied to a file, passes in a fresh pytest process (its own broker, plugin fixtures)."""
    blocks = re.findall(r"^\.\. code-block:: python\n\n((?:(?: {4}.*)?\n)+)", PAGE.read_text(encoding="utf-8"),
                        re.M)
    (example,) = [block for block in blocks if "def test_" in block]
    test_file = tmp_path / "test_example.py"
    test_file.write_text(re.sub(r"^ {4}", "", example, flags=re.M), encoding="utf-8")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    for name in ("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "EVENT_BUS_TOPIC_PREFIX", "EVENT_BUS_SETTINGS_JSON"):
        env.pop(name, None)  # the example sets what it needs itself
    done = subprocess.run([sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
