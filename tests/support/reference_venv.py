"""The reference ``edx-event-bus-kafka`` 6.x in its own virtualenv, one per Python version.

The reference has the same import name as our package, so it can never share a virtualenv with
it. Interoperability tests and the producer benchmark run it in subprocesses with the python that
:func:`ensure_reference_venv` returns. Each interpreter gets the reference release Open edX runs on
it, in ``.venv-reference-pyXY`` built with that same interpreter: 6.1.0 on Python 3.11
(``requirements/py311/reference.txt``) and 6.2.0, which requires 3.12, on 3.12 and later
(``requirements/reference.txt``). The venv is built from those pins (from PyPI on a fresh machine,
such as CI) and rebuilt only when they change; a file lock keeps two processes (parallel test runs,
tox environments of one Python, a benchmark) from building it at the same time.

Run ``python -m tests.support.reference_venv`` to build it by hand; it prints the python path.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"
VENV_DIR = REPO_ROOT / f".venv-reference-{PYTHON_TAG}"
# Pins per interpreter, as for our own requirements: Python 3.11 has its own compiled files.
PINS_DIR = REPO_ROOT / "requirements" / "py311" if sys.version_info < (3, 12) else REPO_ROOT / "requirements"
REQUIREMENTS = PINS_DIR / "reference.txt"
# Written last, after a successful install: its content is the hash of the pins installed.
STAMP = VENV_DIR / ".installed-reference"


def _say(message: str) -> None:
    print(f"[reference-venv] {message}", file=sys.stderr, flush=True)


def _pins_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def _venv_python() -> Path:
    return VENV_DIR / "bin" / "python"


def _is_current(pins_hash: str) -> bool:
    try:
        return STAMP.read_text(encoding="utf-8").strip() == pins_hash and _venv_python().exists()
    except OSError:
        return False


@contextmanager
def _build_lock() -> Iterator[None]:
    """An exclusive lock for building the venv, shared by every process on this machine.

    The lock file lives in the temp dir (named after the venv path) rather than in the repo, so it
    survives the venv being deleted and never shows up in ``git status``.
    """
    tag = hashlib.sha256(str(VENV_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"edx-event-bus-kafka-reference-venv-{tag}.lock"
    with open(lock_path, "a+b") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say("another process is building the reference venv; waiting for it")
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _clean_env() -> dict[str, str]:
    """Our environment minus whatever would point the new venv's python at our own packages."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def pinned_reference_version() -> str:
    """The edx-event-bus-kafka release that the pins for this interpreter install."""
    found = re.search(r"^edx-event-bus-kafka==([^\s;]+)", REQUIREMENTS.read_text(encoding="utf-8"), re.M)
    if found is None:
        raise ValueError(f"{REQUIREMENTS} pins no edx-event-bus-kafka release")
    return found.group(1)


def _run(command: list[str]) -> None:
    _say("$ " + " ".join(command))
    subprocess.run(command, check=True, env=_clean_env(), stdin=subprocess.DEVNULL)


def _build(pins_hash: str) -> None:
    started = time.monotonic()
    if VENV_DIR.exists():
        _say(f"pins changed or install incomplete: recreating {VENV_DIR}")
        shutil.rmtree(VENV_DIR)
    else:
        _say(f"creating {VENV_DIR}")
    # This interpreter (from a venv or tox env, python -m venv starts from its base), so the
    # reference runs on the Python version the tests run on.
    _run([sys.executable, "-m", "venv", str(VENV_DIR)])
    python = str(_venv_python())
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)])
    STAMP.write_text(pins_hash + "\n", encoding="utf-8")
    _say(f"reference {pinned_reference_version()} on Python {sys.version.split()[0]} ready in "
         f"{time.monotonic() - started:.1f} s")


def ensure_reference_venv() -> Path:
    """The python executable of this interpreter's ``.venv-reference-pyXY``, (re)building it when needed.

    Raises:
        subprocess.CalledProcessError: creating the venv or installing the pins failed.

    """
    pins_hash = _pins_hash()
    if not _is_current(pins_hash):
        with _build_lock():
            if not _is_current(pins_hash):  # another process may have built it while we waited
                _build(pins_hash)
    return _venv_python()


if __name__ == "__main__":
    print(ensure_reference_venv())
