"""Typed settings: defaults, validation errors that name the setting, and secrets that never leak."""
from __future__ import annotations

import dataclasses
import logging

import pytest
from django.core import checks
from django.test import override_settings

from edx_event_bus_kafka.internal.errors import ConfigurationError
from edx_event_bus_kafka.internal.settings import clients as config
from edx_event_bus_kafka.internal.settings.declarations import (
    SETTING_SPECS,
    EventBusSettings,
    get_settings,
    settings_problems,
)
from edx_event_bus_kafka.internal.settings.secrets import Secret, redact_options

REFERENCE_SETTINGS = {
    "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": None,
    "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": None,
    "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY": "",
    "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET": "",
    "EVENT_BUS_KAFKA_API_KEY": None,
    "EVENT_BUS_KAFKA_API_SECRET": None,
    "EVENT_BUS_TOPIC_PREFIX": None,
    "EVENT_BUS_KAFKA_POLL_INTERVAL_SEC": 1.0,
    "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": 1.0,
    "EVENT_BUS_KAFKA_CONSUMER_POLL_FAILURE_SLEEP": 1.0,
    "EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT": None,
    "EVENT_BUS_KAFKA_CONSUMERS_ENABLED": True,
    "EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED": True,
}

SECRET_VALUE = "hunter2-very-secret"


def test_every_reference_setting_keeps_its_name_and_default():
    """Each setting of the reference implementation is read, by its name or as an alias, with the same default."""
    specs = {name: spec for spec in SETTING_SPECS for name in (spec.name, *spec.aliases)}
    for name, default in REFERENCE_SETTINGS.items():
        assert name in specs, name
        assert specs[name].default == default, name
        assert specs[name].reference


def test_each_setting_is_declared_once_and_typed_by_its_field():
    """SETTING_SPECS is derived from EventBusSettings' fields: same names, same order, no duplicates."""
    attributes = [spec.attribute for spec in SETTING_SPECS]
    assert attributes == [field.name for field in dataclasses.fields(EventBusSettings)]
    names = [name for spec in SETTING_SPECS for name in (spec.name, *spec.aliases)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("old", "attribute", "value"), [
    ("EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT", "worker_consecutive_errors_limit", 7),
    ("EVENT_BUS_KAFKA_CONSUMER_SHUTDOWN_TIMEOUT_SEC", "worker_shutdown_timeout_sec", 12.0),
])
def test_older_names_of_worker_settings_keep_working(old, attribute, value):
    """The settings consume_events and relay_outbox share have neutral names; the older ones still work."""
    with override_settings(**{old: value}):
        assert getattr(get_settings(), attribute) == value


def test_a_setting_given_under_two_names_is_an_error_naming_both():
    """Setting a worker setting under its neutral and its older name at once is refused."""
    with override_settings(EVENT_BUS_KAFKA_WORKER_CONSECUTIVE_ERRORS_LIMIT=3,
                           EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT=5):
        (problem,) = settings_problems()
    assert "EVENT_BUS_KAFKA_WORKER_CONSECUTIVE_ERRORS_LIMIT" in problem
    assert "EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT" in problem


def test_defaults_parse_to_typed_values():
    """With nothing configured, the typed object holds the documented defaults."""
    loaded = get_settings()
    assert loaded.bootstrap_servers is None
    assert loaded.poll_interval_sec == 1.0
    assert loaded.consumers_enabled is True
    assert loaded.worker_consecutive_errors_limit is None
    assert loaded.producer_config == {}


def test_settings_are_read_lazily_and_follow_override_settings():
    """A changed setting is seen on the next read (the cache is cleared by setting_changed)."""
    assert get_settings().topic_prefix is None
    with override_settings(EVENT_BUS_TOPIC_PREFIX="stage"):
        assert get_settings().topic_prefix == "stage"
        assert config.get_full_topic("user-login") == "stage-user-login"
    assert config.get_full_topic("user-login") == "user-login"


BAD_SETTINGS = [
    ("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "kafka:notaport", "host:port"),
    ("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "kafka:99999", "host:port"),
    ("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", 9092, "comma-separated"),
    ("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "good:9092,bad host:1", "host:port"),
    ("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "registry:8081", "http(s)://"),
    ("EVENT_BUS_KAFKA_POLL_INTERVAL_SEC", 0, "> 0.0"),
    ("EVENT_BUS_KAFKA_POLL_INTERVAL_SEC", "1", "number of seconds"),
    ("EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT", -1, ">= 0.0"),
    ("EVENT_BUS_KAFKA_CONSUMER_POLL_FAILURE_SLEEP", -0.5, ">= 0.0"),
    ("EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT", 0, "whole number >= 1"),
    ("EVENT_BUS_KAFKA_CONSUMER_CONSECUTIVE_ERRORS_LIMIT", 2.5, "whole number >= 1"),
    ("EVENT_BUS_KAFKA_CONSUMERS_ENABLED", "false", "True or False"),
    ("EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED", 1, "True or False"),
    ("EVENT_BUS_TOPIC_PREFIX", ["stage"], "string"),
    ("EVENT_BUS_KAFKA_PRODUCER_CONFIG", {"no.such.option": 1}, "No such configuration property"),
    ("EVENT_BUS_KAFKA_PRODUCER_CONFIG", {"acks": "sometimes"}, "Invalid value"),
    ("EVENT_BUS_KAFKA_PRODUCER_CONFIG", "acks=all", "dict of librdkafka"),
    ("EVENT_BUS_KAFKA_CONSUMER_CONFIG", {"session.timeout.ms": "soon"}, "session.timeout.ms"),
    ("EVENT_BUS_KAFKA_CONSUMER_CONFIG", {"enable.auto.commit": True}, "at-least-once"),
    ("EVENT_BUS_KAFKA_CONSUMER_CONFIG", {"group.id": "other"}, "consume_events -g"),
    ("EVENT_BUS_KAFKA_ADMIN_CONFIG", {"bogus": "x"}, "No such configuration property"),
    ("EVENT_BUS_KAFKA_CLIENT_CONFIG", {"security.protcol": "SSL"}, "No such configuration property"),
    ("EVENT_BUS_KAFKA_CLIENT_CONFIG", {"group.id": "other"}, "consume_events -g"),
    # Each valid alone, refused together: the combination is named.
    ("EVENT_BUS_KAFKA_CONSUMER_CONFIG", {"session.timeout.ms": 60000, "max.poll.interval.ms": 50000},
     "`max.poll.interval.ms`must be >= `session.timeout.ms`"),
]


@pytest.mark.parametrize(("name", "value", "hint"), BAD_SETTINGS)
def test_bad_setting_gives_error_naming_setting_value_and_fix(name, value, hint):
    """Each invalid setting yields a ConfigurationError and a system-check error naming it."""
    with override_settings(**{name: value}):
        with pytest.raises(ConfigurationError) as raised:
            get_settings()
        message = str(raised.value)
        assert name in message
        assert repr(value) in message or (isinstance(value, dict) and next(iter(value)) in message)
        assert hint in message

        errors = [e for e in checks.run_checks() if e.id == "edx_event_bus_kafka.E001"]
        assert len(errors) == 1
        assert name in errors[0].msg and hint in errors[0].msg


def test_all_bad_settings_are_reported_at_once():
    """Several bad settings produce one error listing each of them."""
    with override_settings(EVENT_BUS_KAFKA_POLL_INTERVAL_SEC=-1, EVENT_BUS_KAFKA_CONSUMERS_ENABLED="no"):
        problems = settings_problems()
    assert len(problems) == 2
    assert any("EVENT_BUS_KAFKA_POLL_INTERVAL_SEC" in p for p in problems)
    assert any("EVENT_BUS_KAFKA_CONSUMERS_ENABLED" in p for p in problems)


def test_valid_settings_pass_checks_and_reach_client_configs():
    """Valid values, including pass-through librdkafka options, end up in the client configs."""
    with override_settings(
        EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS="kafka1:9092, SASL_SSL://kafka2:9093,[::1]:9094",
        EVENT_BUS_KAFKA_PRODUCER_CONFIG={"compression.type": "zstd", "linger.ms": 20},
        EVENT_BUS_KAFKA_CONSUMER_CONFIG={"session.timeout.ms": 6000},
        EVENT_BUS_KAFKA_ADMIN_CONFIG={"socket.timeout.ms": 1000},
    ):
        assert settings_problems() == []
        assert not [e for e in checks.run_checks() if e.id.startswith("edx_event_bus_kafka")]
        producer = config.producer_client_config()
        consumer = config.consumer_client_config("my-group")
        admin = config.admin_client_config()
    assert producer["bootstrap.servers"] == "kafka1:9092,SASL_SSL://kafka2:9093,[::1]:9094"
    assert producer["compression.type"] == "zstd" and producer["linger.ms"] == 20
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert consumer["group.id"] == "my-group" and consumer["session.timeout.ms"] == 6000
    assert consumer["enable.auto.commit"] is False and consumer["enable.auto.offset.store"] is False
    assert admin["socket.timeout.ms"] == 1000
    assert producer["client.id"] == "test-service"


VALID_COMBINATIONS = [
    # Refused option by option (SASL_PLAINTEXT alone means GSSAPI, which librdkafka lacks here), valid together.
    {"EVENT_BUS_KAFKA_CLIENT_CONFIG": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                                       "sasl.username": "u", "sasl.password": SECRET_VALUE}},
    {"EVENT_BUS_KAFKA_CONSUMER_CONFIG": {"max.poll.interval.ms": 10000, "session.timeout.ms": 6000}},
    # Split over the shared dict and each client's own dict.
    {"EVENT_BUS_KAFKA_CLIENT_CONFIG": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256"},
     **{f"EVENT_BUS_KAFKA_{kind}_CONFIG": {"sasl.username": kind.lower(), "sasl.password": SECRET_VALUE}
        for kind in ("PRODUCER", "CONSUMER", "ADMIN")}},
]


@pytest.mark.parametrize("values", VALID_COMBINATIONS)
def test_librdkafka_options_are_validated_together_as_the_client_sees_them(values):
    """Options that are only valid in combination pass, and are checked across the shared and own dicts."""
    with override_settings(**values):
        assert settings_problems() == []


def test_own_options_refused_over_the_shared_ones_name_both_settings():
    """A client's dict that clashes with EVENT_BUS_KAFKA_CLIENT_CONFIG is reported, without secrets."""
    with override_settings(EVENT_BUS_KAFKA_CLIENT_CONFIG={"session.timeout.ms": 60000},
                           EVENT_BUS_KAFKA_CONSUMER_CONFIG={"max.poll.interval.ms": 50000,
                                                            "sasl.password": SECRET_VALUE}):
        (problem,) = settings_problems()
    assert "EVENT_BUS_KAFKA_CONSUMER_CONFIG" in problem and "EVENT_BUS_KAFKA_CLIENT_CONFIG" in problem
    assert "not valid for a consumer" in problem and "max.poll.interval.ms" in problem
    assert SECRET_VALUE not in problem


def test_shared_options_incomplete_for_a_client_are_reported_for_that_client():
    """SCRAM in the shared dict without credentials anywhere fails for every client, in one line."""
    with override_settings(EVENT_BUS_KAFKA_CLIENT_CONFIG={"security.protocol": "SASL_SSL",
                                                          "sasl.mechanism": "SCRAM-SHA-256"}):
        (problem,) = settings_problems()
    assert "not valid for producer, consumer and admin clients" in problem
    assert "sasl.username and sasl.password must be set" in problem


def test_client_config_reaches_every_client_under_the_per_client_dicts():
    """EVENT_BUS_KAFKA_CLIENT_CONFIG goes to producer, consumer and admin; their own dicts win."""
    with override_settings(EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS="kafka:9092",
                           EVENT_BUS_KAFKA_CLIENT_CONFIG={"socket.timeout.ms": 2000, "ssl.ca.location": "/ca.pem"},
                           EVENT_BUS_KAFKA_ADMIN_CONFIG={"socket.timeout.ms": 3000}):
        configs = [config.producer_client_config(), config.consumer_client_config("g"), config.admin_client_config()]
    assert [c["ssl.ca.location"] for c in configs] == ["/ca.pem"] * 3
    assert [c["socket.timeout.ms"] for c in configs] == [2000, 2000, 3000]


def test_api_key_and_secret_configure_sasl_plain_over_tls():
    """EVENT_BUS_KAFKA_API_KEY/SECRET give SASL_SSL + PLAIN, as in the reference."""
    with override_settings(EVENT_BUS_KAFKA_API_KEY="user", EVENT_BUS_KAFKA_API_SECRET=SECRET_VALUE):
        common = config.common_client_config()
    assert common["security.protocol"] == "SASL_SSL"
    assert common["sasl.mechanism"] == "PLAIN"
    assert common["sasl.username"] == "user"
    assert common["sasl.password"] == SECRET_VALUE


def test_registry_config_uses_basic_auth_only_when_given():
    """The registry client gets basic auth only when a key or secret is configured."""
    assert config.schema_registry_client_config() is None
    with override_settings(EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL="http://registry:8081"):
        assert config.schema_registry_client_config() == {"url": "http://registry:8081"}
    with override_settings(
        EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL="https://registry:8081",
        EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY="reg-user",
        EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET=SECRET_VALUE,
    ):
        registry = config.schema_registry_client_config()
    assert registry is not None
    assert registry["basic.auth.user.info"] == f"reg-user:{SECRET_VALUE}"


SECRET_CASES = [
    {"EVENT_BUS_KAFKA_API_KEY": "user", "EVENT_BUS_KAFKA_API_SECRET": SECRET_VALUE},
    {
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": "https://r:8081",
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET": SECRET_VALUE,
    },
    {"EVENT_BUS_KAFKA_PRODUCER_CONFIG": {"sasl.password": SECRET_VALUE, "sasl.mechanism": "SCRAM-SHA-512"}},
    {"EVENT_BUS_KAFKA_CONSUMER_CONFIG": {"ssl.key.password": SECRET_VALUE}},
]


@pytest.mark.parametrize("secret_settings", SECRET_CASES)
def test_secrets_never_appear_in_repr_or_logs(secret_settings, caplog):
    """The settings repr and anything logged while loading them hide every secret."""
    caplog.set_level(logging.DEBUG)
    with override_settings(**secret_settings):
        loaded = get_settings()
        shown = repr(loaded) + str(loaded)
        for name in ("producer_client_config", "admin_client_config"):
            shown += repr(redact_options(getattr(config, name)()))
    assert SECRET_VALUE not in shown
    assert SECRET_VALUE not in caplog.text
    assert "********" in shown


@pytest.mark.parametrize(
    "secret_settings",
    [
        {"EVENT_BUS_KAFKA_API_SECRET": [SECRET_VALUE]},
        {"EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET": {"v": SECRET_VALUE}},
        {"EVENT_BUS_KAFKA_PRODUCER_CONFIG": {"sasl.password": [SECRET_VALUE]}},
        {"EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": f"ftp://user:{SECRET_VALUE}@registry"},
    ],
)
def test_secrets_never_appear_in_error_text(secret_settings):
    """Invalid credential settings are reported by name, without their values."""
    (name,) = secret_settings
    with override_settings(**secret_settings):
        with pytest.raises(ConfigurationError) as raised:
            get_settings()
        check_text = " ".join(e.msg for e in checks.run_checks())
    text = str(raised.value) + repr(raised.value) + check_text
    assert name in text
    assert SECRET_VALUE not in text


def test_secret_wrapper_hides_value_everywhere():
    """Secret shows a mask in repr, str and f-strings, and refuses to be pickled."""
    secret = Secret(SECRET_VALUE)
    assert SECRET_VALUE not in f"{secret} {secret!r} {[secret]}"
    assert secret.reveal() == SECRET_VALUE
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)
