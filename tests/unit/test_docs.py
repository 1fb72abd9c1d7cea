"""The documentation that is generated from code stays in step with it."""
from pathlib import Path

from scripts.render_settings_doc import TARGET, render


def test_settings_reference_page_is_current():
    """docs/reference/settings.rst matches the setting declarations (run scripts/render_settings_doc.py)."""
    assert Path(TARGET).read_text(encoding="utf-8") == render()


def test_every_setting_is_documented():
    """Each declared setting has a non-trivial description on the reference page."""
    from edx_event_bus_kafka.internal.settings.declarations import SETTING_SPECS

    page = render()
    for spec in SETTING_SPECS:
        assert f"``{spec.name}``" in page
        assert len(spec.description) > 40, spec.name
