"""What a live run holds besides its ``CONFIG``: tee streams, a logging handler, its start clock.

These are process resources, not data, so they never enter the user's ``CONFIG`` (which stays
plain data that can be copied, saved or compared). :func:`start_run` registers one
:class:`RunState` per run ID; :func:`close` takes it back with :func:`pop_state` and
:func:`release` restores the terminal streams and the root logger.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from labsession.runs._logging import (
    RunLogHandler,
    install_basic_config,
    is_run_handler,
    uninstall_basic_config,
)
from labsession.runs._tee import Tee, restore_streams, swap_streams

__all__ = ["RunState", "attach_streams", "pop_state", "put_state", "release"]


@dataclass
class RunState:
    """The private resources of one live run.

    Attributes
    ----------
    t0
        ``time.perf_counter()`` at start, in seconds (for ``RUN_SECONDS``).
    streams
        The ``(stdout, stderr)`` tees swapped in, or None when the run does not tee.
    log_handler
        The handler added to the root logger (INFO and up to stderr, unless the script's
        handlers show a record on the terminal themselves), or None.
    root_level
        The root logger's level before the run, restored at close unless the script set
        another one during the run (``logging.basicConfig(level=...)`` in ``main``).
    run_level
        The root logger's level as the run left it at start.
    """

    t0: float
    streams: tuple[Tee, Tee] | None = None
    log_handler: logging.Handler | None = None
    root_level: int = logging.NOTSET
    run_level: int = logging.NOTSET


_STATES: dict[str, RunState] = {}
_LOCK = threading.Lock()


def put_state(run_id: str, state: RunState) -> None:
    """Register the state of the run ``run_id`` (replacing any earlier one of that ID)."""
    with _LOCK:
        _STATES[run_id] = state


def pop_state(run_id: str) -> RunState | None:
    """Take the state of ``run_id`` out of the registry (None if it has none)."""
    with _LOCK:
        return _STATES.pop(run_id, None)


def attach_streams(state: RunState, log_dir: str | os.PathLike[str]) -> tuple[Tee, Tee]:
    """Tee stdout and stderr into ``log_dir`` and show INFO logging on stderr until release.

    The run's handler steps aside for records that the script's own handlers show on the
    terminal (see :mod:`labsession.runs._logging`), and ``logging.basicConfig`` works as without
    the run. The root level is lowered to INFO for the run (unless lower already)."""
    state.streams = swap_streams(log_dir)
    root = logging.getLogger()
    state.root_level = root.level
    if not any(is_run_handler(handler) for handler in root.handlers):  # one for nested runs
        state.log_handler = RunLogHandler()
        root.addHandler(state.log_handler)
        install_basic_config()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    state.run_level = root.level
    return state.streams


def release(state: RunState | None) -> None:
    """Remove the logging handler and put the terminal streams back (idempotent)."""
    if state is None:
        return
    root = logging.getLogger()
    if state.log_handler is not None:
        root.removeHandler(state.log_handler)
        state.log_handler = None
        uninstall_basic_config()
    if state.streams is not None:  # the root level goes back once, with the streams
        if root.level == state.run_level:  # a level the script set in main stays, as without a run
            root.setLevel(state.root_level)
        streams, state.streams = state.streams, None
        restore_streams(*streams)
