"""Sphinx configuration for the edx-event-bus-kafka documentation.

Built by ``make docs`` with warnings as errors. Autodoc imports the package, so Django is set up
first with the test settings (they need no database or broker to import).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402 -- sys.path and the settings module must be set first

django.setup()

import edx_event_bus_kafka  # noqa: E402 -- importable only once the repository root is on sys.path

project = "edx-event-bus-kafka"
author = "Open edX event bus maintainers"
copyright = "Open edX event bus maintainers"
release = edx_event_bus_kafka.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
language = "en"

# Google-style docstrings (``Raises:``, ``Arguments:``), as the code uses.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = f"edx-event-bus-kafka {release}"
html_theme_options = {
    "description": "Kafka implementation of the Open edX event bus",
    "fixed_sidebar": True,
}
