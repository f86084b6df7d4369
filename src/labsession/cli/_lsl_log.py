"""Keep liblsl's and mne-lsl's log lines out of the terminal unless ``-v`` asks for them.

liblsl (the C library under ``mne_lsl.lsl``) writes INFO lines to stderr ("Loaded default
config", its git version, ...) and mne-lsl logs to stdout through its own logger. A command that
opens LSL streams calls :func:`quiet_liblsl` first: without ``-v`` only liblsl's fatal errors
reach the terminal (it also logs an ERR line each time an inlet is closed while data flows, which
``record`` does at its end; lost connections are reported by the sources themselves); ``-v``
shows its INFO, WARNING and ERR lines and mne-lsl's log, ``-vv`` liblsl's first debug level.

The user's own ``lsl_api.cfg`` (found as liblsl finds it: ``$LSLAPICFG``, ``./lsl_api.cfg``,
``~/lsl_api/lsl_api.cfg``, ``/etc/lsl_api/lsl_api.cfg``) keeps every setting: its content is
passed on with ``[log] level`` added, and a level the user set there wins.
"""

from __future__ import annotations

import configparser
import io
import logging
import os
from pathlib import Path

__all__ = ["liblsl_config", "quiet_liblsl", "set_verbosity"]

logger = logging.getLogger(__name__)

#: liblsl log level per ``-v`` count: -3 fatal errors only, 0 INFO, 1 the first debug level.
LIBLSL_LEVELS = {0: -3, 1: 0}
_verbosity = 0


def set_verbosity(verbose: int) -> None:
    """Remember the root ``-v`` count for :func:`quiet_liblsl` (called by the root callback)."""
    global _verbosity
    _verbosity = max(0, int(verbose))


def _user_config() -> Path | None:
    candidates = [os.environ.get("LSLAPICFG"), "lsl_api.cfg"]
    candidates += [str(Path.home() / "lsl_api" / "lsl_api.cfg"), "/etc/lsl_api/lsl_api.cfg"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.R_OK) and Path(candidate).is_file():
            return Path(candidate)
    return None


def liblsl_config(verbose: int, user_config: str | None = None) -> str | None:
    """The ``lsl_api.cfg`` content to run liblsl with at verbosity ``verbose`` (``-v`` count).

    Parameters
    ----------
    verbose
        Number of ``-v``.
    user_config
        Content of the user's ``lsl_api.cfg``, if there is one.

    Returns
    -------
    str or None
        ``user_config`` with ``[log] level`` set, or None to leave liblsl's configuration alone
        (the user's file sets the level itself, or cannot be parsed to add it safely).
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # liblsl keys are cased
    try:
        parser.read_string(user_config or "")
    except configparser.Error:
        return None
    if parser.has_option("log", "level"):
        return None
    if not parser.has_section("log"):
        parser.add_section("log")
    parser.set("log", "level", str(LIBLSL_LEVELS.get(verbose, 1)))
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def quiet_liblsl() -> None:
    """Set liblsl's and mne-lsl's log levels from the ``-v`` count (before any stream opens)."""
    import mne_lsl
    from mne_lsl.lsl import set_config_content

    mne_lsl.set_log_level({0: "ERROR", 1: "INFO"}.get(_verbosity, "DEBUG"))
    path = _user_config()
    try:
        user = path.read_text(encoding="utf-8", errors="replace") if path else None
    except OSError:  # gone or unreadable since: leave liblsl to find what it finds
        return
    content = liblsl_config(_verbosity, user)
    if content is not None:
        set_config_content(content)
