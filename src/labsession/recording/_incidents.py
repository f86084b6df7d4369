"""Write errors while recording, kept for ``meta.json``.

:class:`WriteErrors` keeps a session's first write error (a full disk), tells the listeners once,
and describes each failed run for ``meta.json`` ``"write_errors"``. The faults of the streams
(source errors, disconnects) go into each stream's integrity record instead
(:mod:`labsession.recording._integrity`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labsession.errors import SessionError
from labsession.recording._writer import LostSamples, describe_error

__all__ = ["WriteErrors"]

log = logging.getLogger(__name__)


class WriteErrors:
    """The first write error of a session, its listeners, and the entries of earlier runs.

    Parameters
    ----------
    folder
        The session folder, named in every message.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.error: SessionError | None = None
        self.failed_at: str | None = None
        self.earlier: list[dict[str, Any]] = []  # from meta.json, after an attach
        self._listeners: list[Callable[[SessionError], None]] = []
        self._lock = threading.Lock()

    def add_listener(self, callback: Callable[[SessionError], None]) -> None:
        """Call ``callback(error)`` at the first error (at once if there was one)."""
        with self._lock:
            self._listeners.append(callback)
            error = self.error
        if error is not None:
            self._call(callback, error)

    def note(self, what: str, exc: BaseException) -> SessionError:
        """Record that ``what`` failed with ``exc``; return the :class:`SessionError` for it.

        The first one is kept as :attr:`error` and passed to every listener, once.
        """
        error = SessionError(f"{self.folder}: {what} failed ({describe_error(exc)})")
        error.__cause__ = exc
        with self._lock:
            first = self.error is None
            if first:
                self.error, self.failed_at = error, time.strftime("%Y-%m-%dT%H:%M:%S")
                listeners = list(self._listeners)
        if first:
            for callback in listeners:
                self._call(callback, error)
        return error

    def _call(self, callback: Callable[[SessionError], None], error: SessionError) -> None:
        try:
            callback(error)
        except Exception:
            log.exception("%s: an error listener failed", self.folder)

    def entries(self, lost: dict[str, LostSamples]) -> list[dict[str, Any]]:
        """``meta.json`` ``"write_errors"``: earlier runs' entries, then this run's if it failed.

        An entry is ``{"error": message, "time": local time, "lost": {stream: {"n_samples",
        "first_timestamp", "last_timestamp"}}}``.
        """
        entries = list(self.earlier)
        if self.error is not None:
            entries.append(
                {
                    "error": str(self.error),
                    "time": self.failed_at,
                    "lost": {name: entry.to_dict() for name, entry in lost.items()},
                }
            )
        return entries
