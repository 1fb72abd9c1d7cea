"""Shared fixtures. The broker fixtures come from edx_event_bus_kafka.pytest_plugin (entry point).

``--schema-registry=standin|apicurio`` (``EVENT_BUS_TEST_SCHEMA_REGISTRY``) chooses the registry behind
the ``schema_registry`` fixture (see tests/support/registries.py). Tests that need the stand-in
itself (to stop it, or to test it) start a ``SchemaRegistryStandIn`` of their own.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from tests.support.apicurio import ApicurioRegistry
from tests.support.registries import (
    REGISTRY_ENV,
    REGISTRY_KINDS,
    RegistryUnderTest,
    selected_registry_kind,
)
from tests.support.schema_registry import SchemaRegistryStandIn


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--schema-registry``."""
    parser.addoption("--schema-registry", choices=REGISTRY_KINDS, default=None,
                     help=f"registry behind the schema_registry fixture (default: ${REGISTRY_ENV} or standin)")


def pytest_configure(config: pytest.Config) -> None:
    """Publish the choice as an environment variable, so helpers and subprocesses agree."""
    chosen = config.getoption("--schema-registry", default=None)
    if chosen:
        os.environ[REGISTRY_ENV] = chosen
    selected_registry_kind()  # a bad environment value fails the run at once, naming it


@pytest.fixture(scope="session")
def _apicurio_registry() -> Iterator[ApicurioRegistry]:
    """One Apicurio Registry for the whole session (it takes seconds to start), started on first use."""
    with ApicurioRegistry() as registry:
        yield registry


@pytest.fixture
def schema_registry(request: pytest.FixtureRequest) -> Iterator[RegistryUnderTest]:
    """The chosen registry over HTTP: a fresh stand-in for this test, or the session's Apicurio Registry.

    On Apicurio other tests' subjects are there too: use a unique topic prefix and ``subjects(prefix)``.
    """
    if selected_registry_kind() == "apicurio":
        yield request.getfixturevalue("_apicurio_registry")
        return
    with SchemaRegistryStandIn() as standin:
        yield standin


@pytest.fixture
def event_bus_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture everything the event bus logs, at DEBUG and above."""
    caplog.set_level(logging.DEBUG, logger="edx_event_bus_kafka")
    return caplog


@pytest.fixture
def bus_settings(settings, kafka_broker):
    """Django settings pointing the event bus at the test broker (no registry)."""
    settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap_servers
    return settings


@pytest.fixture(autouse=True)
def _fresh_event_bus_state():
    """Each test starts with no producer, no cached schemas and no recorded telemetry."""
    from edx_event_bus_kafka.internal.produce import producer, shutdown
    from edx_event_bus_kafka.internal.wire import serialization
    from tests.support import telemetry

    telemetry.clear()
    yield
    producer.forget_producer(timeout=5)
    serialization.clear_caches()
    shutdown.reset_for_tests()
