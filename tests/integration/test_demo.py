"""``make demo`` (scripts/demo.py) as a newcomer runs it: events end to end, and a clean ending."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.workers import ROOT

pytestmark = pytest.mark.integration


def test_demo_passes_and_ends_with_ok_and_nothing_after():
    """Before: its success ended with the producer's broker-down warnings, printed after the broker stopped.

    The demo always runs the embedded Tansu broker, whichever broker the suite was asked for.
    """
    result = subprocess.run([sys.executable, "scripts/demo.py"], cwd=ROOT, capture_output=True, text=True,
                            timeout=180, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert result.stdout.rstrip().splitlines()[-1] == "[demo] OK", output
    assert "WARNING" not in output and "ERROR" not in output, output
