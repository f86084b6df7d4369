"""Run sessions: reproducible script runs with ``@session``, run folders, logs, seeds, archives.

Wrap an analysis script's main function in :func:`session` (or call :func:`start` and
:func:`close`) and every run gets its own folder ``<script>_out/RUNNING/<ID>/`` with its stdout and
stderr logs and a record of its config, arguments, seed, environment and git state; at the end it
moves to ``FINISHED_SUCCESS/`` or ``FINISHED_ERROR/``. :class:`RandomStateManager` hands out named,
reproducible generators, :class:`SessionManager` lists live and on-disk runs (as dicts, like
scitex-session), :func:`register_session_start_hook` / :func:`register_session_close_hook` let
lineage trackers follow every run, and :func:`archive_existing` / :func:`restore_existing` pack
finished runs into one file each and back.
See the user guide page "Reproducible analysis script".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The hook registry is imported at once (it is tiny): subscribers such as lineage trackers
# register the moment they import labsession.runs, before any run starts.
from labsession.runs._hooks import (
    register_session_close_hook,
    register_session_start_hook,
    unregister_session_close_hook,
    unregister_session_start_hook,
)

if TYPE_CHECKING:
    from labsession.runs._archive import (
        ARCHIVE_FORMATS,
        archive_session_dir,
        restore_session_archive,
    )
    from labsession.runs._bulk import archive_existing, restore_existing
    from labsession.runs._decorator import run, session
    from labsession.runs._finish import running2finished
    from labsession.runs._ids import (
        FINISHED_ERROR,
        FINISHED_SUCCESS,
        RUNNING,
        generate_id,
        id_start_time,
        is_run_id,
    )
    from labsession.runs._lifecycle import StartedRun, close, start, start_run
    from labsession.runs._manager import SessionInfo, SessionManager, get_session_manager
    from labsession.runs._notify import set_notify_hook
    from labsession.runs._plotting import COLORS, PlotStyle
    from labsession.runs._provenance import RunConfig
    from labsession.runs._scan import SessionRecord, scan_runs
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
    "SessionInfo",
    "SessionManager",
    "SessionRecord",
    "StartedRun",
    "archive_existing",
    "archive_session_dir",
    "close",
    "fix_seeds",
    "generate_id",
    "get_session_manager",
    "id_start_time",
    "is_run_id",
    "register_session_close_hook",
    "register_session_start_hook",
    "restore_existing",
    "restore_session_archive",
    "run",
    "running2finished",
    "scan_runs",
    "session",
    "set_notify_hook",
    "start",
    "start_run",
    "unregister_session_close_hook",
    "unregister_session_start_hook",
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
    "StartedRun": "_lifecycle",
    "close": "_lifecycle",
    "start": "_lifecycle",
    "start_run": "_lifecycle",
    "running2finished": "_finish",
    "set_notify_hook": "_notify",
    "SessionInfo": "_manager",
    "SessionManager": "_manager",
    "get_session_manager": "_manager",
    "SessionRecord": "_scan",
    "scan_runs": "_scan",
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
