"""Shared pytest configuration: deterministic hypothesis profile for CI, the X display."""

import pytest
from hypothesis import HealthCheck, settings

from labsession.testing import xvfb_display

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def display():
    """Name of the X display windows open on: the one set, or an Xvfb of the test session's own.

    CI installs Xvfb and Mesa, so GUI tests never skip.
    """
    with xvfb_display() as name:
        yield name


@pytest.fixture
def gui_state_dir(tmp_path, monkeypatch):
    """Keep imgui's window layouts out of the user's state folder."""
    folder = tmp_path / "state"
    monkeypatch.setenv("LABSESSION_STATE_DIR", str(folder))
    return folder
