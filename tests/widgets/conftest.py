"""Widget tests: imgui's state files never land in the user's folders."""

import pytest


@pytest.fixture(autouse=True)
def _state_dir(gui_state_dir):
    """Every widget test keeps window layouts under its tmp_path."""
    return gui_state_dir
