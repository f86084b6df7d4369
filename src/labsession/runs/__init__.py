"""Run sessions: reproducible script runs with ``@session``, run folders, logs, seeds, archives.

Wrap an analysis script's main function in :func:`session` (or call :func:`start` and
:func:`close`) and every run gets its own folder ``<script>_out/RUNNING/<ID>/`` with its stdout and
stderr logs and a record of its config, arguments, seed, environment and git state; at the end it
moves to ``FINISHED_SUCCESS/`` or ``FINISHED_ERROR/``. :class:`RandomStateManager` hands out named,
reproducible generators, :class:`SessionManager` lists live and on-disk runs, and
:func:`archive_existing` / :func:`restore_existing` pack finished runs into one file each and back.
See the user guide page "Reproducible analysis script".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labsession.runs._archive import (
        ARCHIVE_FORMATS,
        archive_session_dir,
        restore_session_archive,
    )
    from labsession.runs._bulk import archive_existing, restore_existing
    from labsession.runs._decorator import run, session
    from labsession.runs._ids import (
        FINISHED_ERROR,
        FINISHED_SUCCESS,
        RUNNING,
        generate_id,
        id_start_time,
        is_run_id,
    )
    from labsession.runs._lifecycle import close, running2finished, set_notify_hook, start
    from labsession.runs._manager import (
        SessionManager,
        SessionRecord,
        get_session_manager,
        scan_runs,
    )
    from labsession.runs._plotting import COLORS, PlotStyle
    from labsession.runs._provenance import RunConfig
    from labsession.runs._seeds import RandomStateManager, fix_seeds

__all__ = [
    "ARCHIVE_FORMATS",
    "COLORS",
    "FINISHED_ERROR",
    "FINISHED_SUCCESS",
    "RUNNING",
    "PlotStyle",
    "RandomStateManager",
    "RunConfig",
    "SessionManager",
    "SessionRecord",
    "archive_existing",
    "archive_session_dir",
    "close",
    "fix_seeds",
    "generate_id",
    "get_session_manager",
    "id_start_time",
    "is_run_id",
    "restore_existing",
    "restore_session_archive",
    "run",
    "running2finished",
    "scan_runs",
    "session",
    "set_notify_hook",
    "start",
]

# Imported on first use, so that ``from labsession.runs import session`` pulls in only what a
# script run needs (not the bulk archive machinery, rich or multiprocessing).
_WHERE = {
    "ARCHIVE_FORMATS": "_archive",
    "archive_session_dir": "_archive",
    "restore_session_archive": "_archive",
    "archive_existing": "_bulk",
    "restore_existing": "_bulk",
    "run": "_decorator",
    "session": "_decorator",
    "FINISHED_ERROR": "_ids",
    "FINISHED_SUCCESS": "_ids",
    "RUNNING": "_ids",
    "generate_id": "_ids",
    "id_start_time": "_ids",
    "is_run_id": "_ids",
    "close": "_lifecycle",
    "running2finished": "_lifecycle",
    "set_notify_hook": "_lifecycle",
    "start": "_lifecycle",
    "SessionManager": "_manager",
    "SessionRecord": "_manager",
    "get_session_manager": "_manager",
    "scan_runs": "_manager",
    "COLORS": "_plotting",
    "PlotStyle": "_plotting",
    "RunConfig": "_provenance",
    "RandomStateManager": "_seeds",
    "fix_seeds": "_seeds",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'labsession.runs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"labsession.runs.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
