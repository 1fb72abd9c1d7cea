"""Django settings for the test suite, ``manage.py`` and the demo.

Event bus settings can be given through environment variables of the same name, so test
subprocesses (``manage.py consume_events`` ...) and the demo reach the embedded broker.
"""
import json
import os

SECRET_KEY = "insecure-test-only-key"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    # Listed before openedx_events so that our consume_events command is the one Django runs.
    "edx_event_bus_kafka",
    "openedx_events",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "tests",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TEST_DATABASE_PATH", "default.sqlite3"),
        "TEST": {"NAME": os.environ.get("TEST_DATABASE_PATH") or None},
    }
}

# Outbox concurrency tests run their processes against a throw-away PostgreSQL server.
if os.environ.get("TEST_POSTGRES_PORT"):
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": os.environ["TEST_POSTGRES_PORT"],
        "NAME": os.environ.get("TEST_POSTGRES_DB", "postgres"),
        "USER": "postgres",
    }

EVENTS_SERVICE_NAME = os.environ.get("EVENTS_SERVICE_NAME", "test-service")

_ENV_SETTINGS = [
    "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS",
    "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL",
    "EVENT_BUS_TOPIC_PREFIX",
]
for _name in _ENV_SETTINGS:
    if os.environ.get(_name):
        globals()[_name] = os.environ[_name]


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "edx_event_bus_kafka": {"handlers": ["console"], "level": os.environ.get("EVENT_BUS_LOG_LEVEL", "INFO")},
        "edx_event_bus_kafka.librdkafka": {"level": "WARNING"},
    },
}

# Monitoring goes to a recording backend (New Relic and Datadog cannot run here).
OPENEDX_TELEMETRY = ["tests.support.telemetry.RecordingBackend"]

# Producing through openedx-events, as a service would configure it.
EVENT_BUS_PRODUCER = "edx_event_bus_kafka.create_producer"
EVENT_BUS_CONSUMER = "edx_event_bus_kafka.KafkaEventConsumer"
EVENT_BUS_PRODUCER_CONFIG = {
    "org.openedx.learning.course.enrollment.changed.v1": {
        "learning-course-enrollment": {"event_key_field": "enrollment.course.course_key", "enabled": True},
    },
}

# JSON-encoded settings for subprocesses, e.g. EVENT_BUS_SETTINGS_JSON='{"EVENT_BUS_KAFKA_...": 1}'.
for _name, _value in json.loads(os.environ.get("EVENT_BUS_SETTINGS_JSON", "{}")).items():
    globals()[_name] = _value
