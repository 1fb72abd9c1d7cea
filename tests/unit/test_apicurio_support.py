"""Finding a Java for Apicurio Registry (tests/support/apicurio.py), with fake JDKs that only print a version."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.apicurio import JAVA_ENV, ApicurioError, find_java, java_major_version


def fake_jdk(root: Path, name: str, version: str) -> Path:
    """A JDK home whose bin/java prints ``version`` the way ``java -version`` does (on stderr)."""
    java = root / name / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2025-01-01\' >&2\n', encoding="utf-8")
    java.chmod(0o755)
    return root / name


@pytest.fixture
def no_java_around(monkeypatch, tmp_path):
    """No JAVA_HOME, no registry Java home, and a PATH without java."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv(JAVA_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))


@pytest.mark.parametrize(("printed", "major"), [("25.0.1", 25), ("21", 21), ("17.0.15", 17), ("1.8.0_412", 8)])
def test_java_major_version__reads_the_feature_release(tmp_path, printed, major):
    """`java -version` output gives the feature release, old 1.x numbering included."""
    assert java_major_version(str(fake_jdk(tmp_path, "jdk", printed) / "bin" / "java")) == major


def test_find_java__newest_installed_jdk_of_21_or_later(tmp_path, no_java_around):
    """Without JAVA_HOME or java on PATH, the newest JDK in the JVM folder that is at least 21 is chosen."""
    jvms = tmp_path / "jvm"
    for name, version in (("java-17", "17.0.15"), ("temurin-25", "25.0.1"), ("temurin-21", "21.0.7")):
        fake_jdk(jvms, name, version)
    assert find_java(jvm_root=jvms) == str(jvms / "temurin-25" / "bin" / "java")


def test_find_java__java_home_of_21_wins_over_installed_jdks(tmp_path, no_java_around, monkeypatch):
    """A JAVA_HOME that is new enough is used before any other JDK."""
    monkeypatch.setenv("JAVA_HOME", str(fake_jdk(tmp_path, "home-21", "21.0.7")))
    fake_jdk(tmp_path / "jvm", "temurin-25", "25.0.1")
    assert find_java(jvm_root=tmp_path / "jvm") == str(tmp_path / "home-21" / "bin" / "java")


def test_find_java__too_old_everywhere_names_every_candidate(tmp_path, no_java_around, monkeypatch):
    """When nothing is 21 or newer, the error lists each java tried with its version and names the variable."""
    monkeypatch.setenv("JAVA_HOME", str(fake_jdk(tmp_path, "home-17", "17.0.15")))
    fake_jdk(tmp_path / "jvm", "java-11", "11.0.2")
    with pytest.raises(ApicurioError) as caught:
        find_java(jvm_root=tmp_path / "jvm")
    message = str(caught.value)
    assert f"{tmp_path / 'home-17' / 'bin' / 'java'} ($JAVA_HOME): Java 17" in message
    assert f"{tmp_path / 'jvm' / 'java-11' / 'bin' / 'java'} ({tmp_path / 'jvm'}): Java 11" in message
    assert JAVA_ENV in message and "Java 21 or newer" in message


def test_find_java__registry_java_home_must_itself_be_21(tmp_path, no_java_around, monkeypatch):
    """A registry Java home that is too old is an error naming it, even when a newer JDK is installed."""
    monkeypatch.setenv(JAVA_ENV, str(fake_jdk(tmp_path, "chosen-17", "17.0.15")))
    fake_jdk(tmp_path / "jvm", "temurin-25", "25.0.1")
    with pytest.raises(ApicurioError, match=rf"\(\${JAVA_ENV}\): Java 17"):
        find_java(jvm_root=tmp_path / "jvm")
