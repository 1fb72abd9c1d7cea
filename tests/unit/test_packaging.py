"""The package metadata claims exactly the Python, Django and openedx-events versions CI's matrix tests."""
from __future__ import annotations

import ast
import configparser
import itertools
import re
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]


def _tox() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini", encoding="utf-8")
    return config


def _tox_envs() -> list[str]:
    """The envlist of tox.ini with the ``{a,b}`` groups expanded, e.g. ``py311-django42``."""
    envs = []
    for entry in _envlist_entries():
        parts = re.split(r"(\{[^}]*\})", entry)
        choices = [part[1:-1].split(",") if part.startswith("{") else [part] for part in parts]
        envs += ["".join(combination) for combination in itertools.product(*choices)]
    return envs


def _envlist_entries() -> list[str]:
    """The envlist entries; commas inside braces belong to the entry."""
    text = _tox()["tox"]["envlist"]
    return [entry.strip() for entry in re.split(r",(?![^{]*\})|\n", text) if entry.strip()]


def _factors(prefix: str) -> set[str]:
    """The versions named by one kind of factor: ``py311`` -> ``3.11``, ``django42`` -> ``4.2``."""
    found = set()
    for env in _tox_envs():
        for factor in env.split("-"):
            if match := re.fullmatch(rf"{prefix}(\d)(\d+)", factor):
                found.add(f"{match.group(1)}.{match.group(2)}")
    return found


def _setup_keywords() -> dict[str, Any]:
    """The literal keyword arguments of the ``setup()`` call in setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    call = next(node for node in calls if getattr(node.func, "id", "") == "setup")
    keywords: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:  # **kwargs
            continue
        try:
            keywords[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            continue  # computed values (version, install_requires read from base.in)
    return keywords


def _base_requirement(name: str) -> Requirement:
    """The requirement on ``name`` in requirements/base.in (which setup.py installs)."""
    for line in (ROOT / "requirements" / "base.in").read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-"):
            requirement = Requirement(text)
            if requirement.name.lower() == name.lower():
                return requirement
    raise AssertionError(f"requirements/base.in does not require {name}")


def _classified(prefix: str) -> set[str]:
    return {value.removeprefix(prefix) for value in _setup_keywords()["classifiers"] if value.startswith(prefix)}


def _next_feature_release(version: str) -> str:
    major, minor = version.split(".")
    return f"{major}.{int(minor) + 1}"


def test_tox_matrix_is_read_as_seven_combinations_the_newest_openedx_events_and_quality():
    """The helpers see the envlist CI runs (so the checks below compare against the real matrix)."""
    assert set(_tox_envs()) == {
        "py311-django42", "py311-django52", "py312-django42", "py312-django52", "py312-django60",
        "py313-django52", "py313-django60", "py312-django60-newest", "quality",
    }  # fmt: skip


def test_python_classifiers_and_python_requires_are_the_tested_pythons():
    """Each tested Python has its classifier and no other does; python_requires starts at the oldest tested."""
    tested = _factors("py")
    assert _classified("Programming Language :: Python :: 3.") == {version.split(".")[1] for version in tested}
    python_requires = SpecifierSet(_setup_keywords()["python_requires"])
    oldest = min(tested, key=lambda version: tuple(map(int, version.split("."))))
    assert all(f"{version}.0" in python_requires for version in tested)
    assert f"3.{int(oldest.split('.')[1]) - 1}.99" not in python_requires


def test_django_classifiers_and_range_are_the_tested_series():
    """Django classifiers name the tested series; the range admits each of them and stops before the next."""
    tested = _factors("django")
    assert _classified("Framework :: Django :: ") == tested
    specifier = _base_requirement("Django").specifier
    by_age = sorted(tested, key=lambda version: tuple(map(int, version.split("."))))
    for series in tested:
        assert f"{series}.0" in specifier
        assert f"{series}.99" in specifier
    assert f"{_next_feature_release(by_age[-1])}.0" not in specifier
    major, minor = by_age[0].split(".")
    assert f"{major}.{int(minor) - 1}.99" not in specifier


def test_openedx_events_lower_bound_is_the_release_the_oldest_combination_installs():
    """base.in's openedx-events lower bound is the release tox installs for the oldest combination."""
    commands = _tox()["testenv"]["commands_pre"]
    (installed,) = re.findall(r"openedx-events==([\d.]+)", commands)
    specifier = _base_requirement("openedx-events").specifier
    assert installed in specifier
    major, minor, _patch = installed.split(".")
    assert f"{major}.{int(minor) - 1}.99" not in specifier


def test_testing_extra_installs_only_what_the_test_requirements_pin():
    """Each package of the ``testing`` extra is pinned in every test requirements file, so CI runs what users get."""
    extra = [Requirement(text).name.lower() for text in _setup_keywords()["extras_require"]["testing"]]
    assert "pytest-django" in extra  # the local broker how-to's example uses its ``settings`` fixture
    for pins in (ROOT / "requirements" / "test.txt", ROOT / "requirements" / "py311" / "test.txt"):
        pinned = set(re.findall(r"^([A-Za-z0-9_.-]+)==", pins.read_text(encoding="utf-8"), re.M))
        assert set(extra) <= {name.lower() for name in pinned}, pins
