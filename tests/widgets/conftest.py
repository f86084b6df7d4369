"""Widget tests: imgui's state files never land in the user's folders."""

import pytest


@pytest.fixture(autouse=True)
def _state_dir(gui_state_dir):
    """Every widget test keeps window layouts under its tmp_path."""
    return gui_state_dir


@pytest.fixture
def state_dir(gui_state_dir, tmp_path_factory, monkeypatch):
    """The user's state folder (where the session list caches its rows) outside ``tmp_path``,
    for the tests that use ``tmp_path`` as the sessions folder: a ``state`` folder in it would
    be listed as an entry."""
    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("LABSESSION_STATE_DIR", str(folder))
    return folder
