"""Per-user folders where labsession keeps its own state (never the working directory)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["user_state_dir"]

#: Environment variable that overrides :func:`user_state_dir` (tests, portable installs).
STATE_DIR_ENV = "LABSESSION_STATE_DIR"


def user_state_dir(create: bool = True) -> Path:
    """The folder for labsession's per-user state (window layouts, GUI settings).

    ``$LABSESSION_STATE_DIR`` if set; otherwise ``$XDG_STATE_HOME/labsession`` (default
    ``~/.local/state/labsession``) on Linux, ``%LOCALAPPDATA%\\labsession`` on Windows and
    ``~/Library/Application Support/labsession`` on macOS.

    Parameters
    ----------
    create
        Create the folder (and its parents) if it does not exist.
    """
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        folder = Path(override)
    elif sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
        folder = Path(base) / "labsession"
    elif sys.platform == "darwin":
        folder = Path.home() / "Library" / "Application Support" / "labsession"
    else:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        folder = Path(base) / "labsession"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder
