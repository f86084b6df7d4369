"""What a live run holds besides its ``CONFIG``: tee streams, a logging handler, its start clock.

These are process resources, not data, so they never enter the user's ``CONFIG`` (which stays
plain data that can be copied, saved or compared). :func:`start_run` registers one
:class:`RunState` per run ID; :func:`close` takes it back with :func:`pop_state` and
:func:`release` restores the terminal streams and the root logger.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from labsession.runs._tee import Tee, restore_streams, swap_streams

__all__ = ["RunState", "attach_streams", "pop_state", "put_state", "release"]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (the tee during the run)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


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
        The handler added to the root logger (INFO and up to stderr), or None.
    root_level
        The root logger's level before the run, restored at close.
    """

    t0: float
    streams: tuple[Tee, Tee] | None = None
    log_handler: logging.Handler | None = None
    root_level: int = logging.NOTSET


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

    A script that set up logging to the terminal itself (``logging.basicConfig`` at import)
    keeps its own handler (no second one is added): its messages reach the tee, so the logs,
    once each. The root level is lowered to INFO for the run either way."""
    state.streams = swap_streams(log_dir)
    root = logging.getLogger()
    state.root_level = root.level
    if not any(getattr(h, "stream", None) in state.streams for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        state.log_handler = handler
        root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return state.streams


def release(state: RunState | None) -> None:
    """Remove the logging handler and put the terminal streams back (idempotent)."""
    if state is None:
        return
    root = logging.getLogger()
    if state.log_handler is not None:
        root.removeHandler(state.log_handler)
        state.log_handler = None
    if state.streams is not None:  # the root level goes back once, with the streams
        root.setLevel(state.root_level)
        streams, state.streams = state.streams, None
        restore_streams(*streams)
