"""Test-only support code: stand-ins for services the test suite cannot install (not shipped with the app)."""
