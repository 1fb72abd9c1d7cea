"""The test app: holds models and signals used only by the test suite."""
from django.apps import AppConfig


class TestsConfig(AppConfig):
    name = "tests"
    label = "tests"
