"""Run identifiers and the folder layout of a script's output tree.

A run is named by its start time and a short random suffix, in the form the established run tools
write (``scitex-session``, ``gen_ID(N=4)``)::

    2026Y-05M-17D-14h23m05s_a1B2

The name sorts by start time, and the suffix (62**4 choices, drawn from the operating system's
entropy, never from the seeded ``random`` module) makes two runs started in one second differ.
:func:`make_run_dir` creates the folder with ``exist_ok=False`` and draws a new suffix on a clash,
so even concurrent starts never share a folder. Folders written by the established tools, including
ones with a ``-<suffix>`` appended (``sdir_suffix``) and scitex-session's debug runs
(``DEBUG_<ID>``, never written here), are recognised by :func:`is_run_id`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import string
from pathlib import Path

__all__ = [
    "DEBUG_PREFIX",
    "FINISHED",
    "FINISHED_ERROR",
    "FINISHED_SUCCESS",
    "ID_PATTERN",
    "RUNNING",
    "STATUS_FOLDERS",
    "generate_id",
    "id_start_time",
    "is_run_id",
    "make_run_dir",
]

#: Folder of runs in progress (or whose process died before ``close``).
RUNNING = "RUNNING"
#: Folder of runs that closed with exit status 0 or ``None``.
FINISHED_SUCCESS = "FINISHED_SUCCESS"
#: Folder of runs that closed with a non-zero exit status.
FINISHED_ERROR = "FINISHED_ERROR"
#: Folder the established tools use for runs closed without a status (read, never written here).
FINISHED = "FINISHED"
#: Every status folder, in the order listings show them.
STATUS_FOLDERS = (RUNNING, FINISHED_SUCCESS, FINISHED_ERROR, FINISHED)

_TIME_FORMAT = "%YY-%mM-%dD-%Hh%Mm%Ss"
_ALPHABET = string.ascii_letters + string.digits

#: What scitex-session puts before the ID of a run in its debug mode (``IS_DEBUG: true`` in
#: ``./config/IS_DEBUG.yaml``): ``DEBUG_2026Y-05M-17D-14h23m05s_a1B2``.
DEBUG_PREFIX = "DEBUG_"

#: A run folder name: the ID, optionally after ``DEBUG_`` and followed by ``-<sdir_suffix>``.
ID_PATTERN = re.compile(
    r"^(?P<debug>" + DEBUG_PREFIX + r")?"
    r"(?P<stamp>\d{4}Y-\d{2}M-\d{2}D-\d{2}h\d{2}m\d{2}s)_(?P<rand>[A-Za-z0-9]+)"
    r"(?:-(?P<suffix>[A-Za-z0-9_.-]+))?$"
)


def generate_id(*, now: dt.datetime | None = None, n_random: int = 4) -> str:
    """Return a new run ID, ``YYYYY-MMM-DDD-HHhMMmSSs_XXXX`` (local time).

    Parameters
    ----------
    now
        Start time to encode (default: the current local time).
    n_random
        Number of random letters and digits after the underscore.

    Examples
    --------
    >>> import datetime as dt
    >>> rid = generate_id(now=dt.datetime(2026, 5, 17, 14, 23, 5))
    >>> rid[:24], len(rid)
    ('2026Y-05M-17D-14h23m05s_', 28)
    """
    stamp = (now or dt.datetime.now()).strftime(_TIME_FORMAT)
    return stamp + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(n_random))


def is_run_id(name: str) -> bool:
    """Return True if ``name`` is a run folder name (an ID, optionally ``DEBUG_<ID>``, optionally
    followed by ``-<suffix>``)."""
    return ID_PATTERN.match(name) is not None


def id_start_time(name: str) -> dt.datetime:
    """Return the start time encoded in a run ID (naive local time).

    Raises
    ------
    ValueError
        If ``name`` is not a run ID.
    """
    match = ID_PATTERN.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a run ID (expected e.g. '2026Y-05M-17D-14h23m05s_a1B2')")
    return dt.datetime.strptime(match["stamp"], _TIME_FORMAT)


def make_run_dir(
    parent: str | os.PathLike[str], *, suffix: str | None = None, max_tries: int = 32
) -> tuple[str, Path]:
    """Create a fresh run folder under ``parent`` and return ``(ID, path)``.

    The folder is created with ``exist_ok=False``; on a clash (two starts in one second drawing
    the same suffix) a new suffix is drawn, so concurrent processes never share a folder.

    Parameters
    ----------
    parent
        The ``RUNNING`` folder (created if missing).
    suffix
        Appended to the folder name as ``-<suffix>`` (the ``sdir_suffix`` of :func:`start`).
    max_tries
        Attempts before giving up.

    Raises
    ------
    FileExistsError
        If ``max_tries`` suffixes all clashed (which points at a broken random source).
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(max_tries):
        run_id = generate_id()
        name = f"{run_id}-{suffix}" if suffix else run_id
        path = parent / name
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return run_id, path
    raise FileExistsError(f"{parent}: could not create a unique run folder in {max_tries} tries")
