"""Session start and close hooks: how lineage trackers and other subscribers follow runs.

A subscriber registers a function and labsession calls it at every session start or close, without
labsession ever importing the subscriber (the dependency goes one way: subscriber -> labsession).
The contract is scitex-session's:

- ``register_session_start_hook(fn)``: ``fn(session_id, script_path, metadata)`` (positional) when
  a session starts (:func:`labsession.runs.start`, or ``SessionManager.create_session``).
- ``register_session_close_hook(fn)``: ``fn(status, exit_code)`` (positional) when a registered
  session closes.

Hooks run in registration order; registering the same function twice is a no-op. A hook that
raises is logged as a warning with its traceback and never breaks the run, nor stops the hooks
after it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "fire_session_close_hooks",
    "fire_session_start_hooks",
    "register_session_close_hook",
    "register_session_start_hook",
    "unregister_session_close_hook",
    "unregister_session_start_hook",
]

logger = logging.getLogger(__name__)

Hook = TypeVar("Hook", bound=Callable[..., Any])

_START_HOOKS: list[Callable[..., Any]] = []
_CLOSE_HOOKS: list[Callable[..., Any]] = []
_LOCK = threading.Lock()


def _register(hooks: list[Callable[..., Any]], fn: Hook, kind: str) -> Hook:
    if not callable(fn):
        raise TypeError(f"session {kind} hook must be callable, got {fn!r}")
    with _LOCK:
        if fn not in hooks:
            hooks.append(fn)
    return fn


def _unregister(hooks: list[Callable[..., Any]], fn: Callable[..., Any]) -> None:
    with _LOCK:
        if fn in hooks:
            hooks.remove(fn)


def register_session_start_hook(fn: Hook) -> Hook:
    """Call ``fn(session_id, script_path, metadata)`` at every session start.

    Parameters
    ----------
    fn
        Called positionally with the run ID (str), the script's path (str, or None when unknown)
        and a dict of plain data about the run (``sdir_run``, ``pid``, ``host``; plus
        ``notebook_path`` for a notebook).

    Returns
    -------
    callable
        ``fn`` itself, so that this works as a decorator.

    Raises
    ------
    TypeError
        If ``fn`` is not callable.
    """
    return _register(_START_HOOKS, fn, "start")


def register_session_close_hook(fn: Hook) -> Hook:
    """Call ``fn(status, exit_code)`` whenever a registered session closes.

    Parameters
    ----------
    fn
        Called positionally with the final status (``"success"`` or ``"error"`` for runs closed
        by :func:`labsession.runs.close`; whatever was given to ``close_session`` otherwise) and
        the exit code (int, or None for a run closed without one).

    Returns
    -------
    callable
        ``fn`` itself, so that this works as a decorator.

    Raises
    ------
    TypeError
        If ``fn`` is not callable.
    """
    return _register(_CLOSE_HOOKS, fn, "close")


def unregister_session_start_hook(fn: Callable[..., Any]) -> None:
    """Remove a start hook (nothing happens if it is not registered)."""
    _unregister(_START_HOOKS, fn)


def unregister_session_close_hook(fn: Callable[..., Any]) -> None:
    """Remove a close hook (nothing happens if it is not registered)."""
    _unregister(_CLOSE_HOOKS, fn)


def _fire(hooks: list[Callable[..., Any]], kind: str, *args: Any) -> None:
    with _LOCK:
        snapshot = list(hooks)
    for hook in snapshot:
        try:
            hook(*args)
        except Exception:  # a subscriber must never break a run
            logger.warning("session %s hook %r failed; the run goes on", kind, hook, exc_info=True)


def fire_session_start_hooks(
    session_id: str, script_path: str | None = None, metadata: dict[str, Any] | None = None
) -> None:
    """Call every start hook as ``hook(session_id, script_path, metadata)``; log failures."""
    _fire(_START_HOOKS, "start", session_id, script_path, metadata)


def fire_session_close_hooks(status: str = "success", exit_code: int | None = 0) -> None:
    """Call every close hook as ``hook(status, exit_code)``; log failures."""
    _fire(_CLOSE_HOOKS, "close", status, exit_code)
