"""The settings the security how-to shows pass our settings check, and librdkafka accepts every client built from them.

Each ``python`` block of docs/how-to/security.rst is run with placeholder environment variables; the
``EVENT_BUS_*`` names it assigns become the Django settings. Token callbacks (``oauth_cb``) are
replaced by one returning a fixed token, because confluent-kafka calls them when a client is made,
and the certificate and key paths by real files of the same kind (librdkafka reads them when a client
is made); every other option is checked as written. No client is given the example brokers' addresses.
"""
from __future__ import annotations

import inspect
import re
import time
import types
from pathlib import Path
from typing import Any

import pytest

from edx_event_bus_kafka.internal.settings.clients import (
    admin_client_config,
    consumer_client_config,
    producer_client_config,
    schema_registry_client_config,
)
from edx_event_bus_kafka.internal.settings.declarations import get_settings
from edx_event_bus_kafka.internal.settings.librdkafka_options import OWNED_OPTIONS, check_librdkafka_options
from edx_event_bus_kafka.testing.tls import CertificateAuthority

PAGE = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "security.rst"
_BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:(?: {4}.*)?\n)+)", re.M)
# Ours, not the example's: the log sink and the broker address (which must not be contacted from here).
_NOT_CHECKED = {"logger", "bootstrap.servers"}


class _Environment(dict):
    """``os.environ`` for the examples: every variable is set, to a placeholder."""

    def __missing__(self, name: str) -> str:
        return f"example-{name.lower()}"


def python_blocks() -> list[str]:
    return [re.sub(r"^ {4}", "", body, flags=re.M) for body in _BLOCK.findall(PAGE.read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, str]:
    """A real file for each path option of the examples: a CA certificate, a client certificate and its key."""
    authority = CertificateAuthority(tmp_path_factory.mktemp("tls"))
    client = authority.issue("edx-lms", server=False)
    return {"ssl.ca.location": str(authority.certificate_path), "ssl.certificate.location": str(client.certificate),
            "ssl.key.location": str(client.key)}


def fixed_token(_oauthbearer_config: Any) -> tuple[str, float]:
    return "example-token", time.time() + 3600


def example_settings(block: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"os": types.SimpleNamespace(environ=_Environment())}
    exec(block, namespace)  # the examples are our own docs
    return {name: value for name, value in namespace.items() if name.startswith("EVENT_BUS_")}


def test_security_examples__the_page_has_them():
    """The page's python blocks are found (so the test below checks something)."""
    blocks = python_blocks()
    assert len(blocks) >= 10
    assert all(example_settings(block) for block in blocks)


@pytest.mark.parametrize("block", python_blocks(), ids=lambda block: block.strip().splitlines()[0][:60])
def test_security_example__passes_the_settings_check_and_librdkafka(block, settings, tls_files):
    """Every setting of the example is valid, and each kind of client accepts the options built from them."""
    values = example_settings(block)
    client_config = dict(values.get("EVENT_BUS_KAFKA_CLIENT_CONFIG", {}))
    for name in set(client_config) & set(tls_files):
        assert client_config[name].startswith("/etc/"), (name, "example paths are absolute")
        client_config[name] = tls_files[name]
    values["EVENT_BUS_KAFKA_CLIENT_CONFIG"] = client_config
    if "oauth_cb" in client_config:
        inspect.signature(client_config["oauth_cb"]).bind(None)  # called with sasl.oauthbearer.config
        client_config["oauth_cb"] = fixed_token
    for name, value in values.items():
        setattr(settings, name, value)
    bus = get_settings()  # raises ConfigurationError naming each invalid setting
    for kind, config in (("producer", producer_client_config(bus)), ("consumer", consumer_client_config("g", bus)),
                         ("admin", admin_client_config(bus))):
        options = {name: value for name, value in config.items()
                   if name not in _NOT_CHECKED and name not in OWNED_OPTIONS[kind]}
        assert check_librdkafka_options(options, kind) == [], kind
    registry = schema_registry_client_config(bus)
    if registry is not None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        SchemaRegistryClient(registry)  # refuses unknown or malformed options; contacts nothing
