"""Shared test setup: Brian2's global state is reset for every test so order never matters.

The fast tier runs Brian2's numpy target (no compilation; CI starts with a cold cache).
"""
import brian2
import pytest

from hlopsim.sim import prefs


@pytest.fixture(autouse=True)
def brian2_numpy_target():
    """Numpy code generation and Brian2's default preferences for every test."""
    brian2.prefs.reset_to_defaults()
    prefs.configure("numpy")
    yield
    brian2.prefs.reset_to_defaults()
