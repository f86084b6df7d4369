"""A registry of run sessions, with scitex-session's dict API: the ones this process started.

:class:`SessionManager` returns sessions as dicts (:class:`SessionInfo`: ``{}`` for an unknown
ID, status ``"closed"`` after :meth:`SessionManager.close_session`, the final status kept as
``"final_status"``) and fires the start and close hooks of :mod:`labsession.runs._hooks`. It is
thread-safe: one lock, held only to read or swap the registry; hooks run outside it. The global
instance, :func:`get_session_manager`, is what :func:`start` and :func:`close` update.
:meth:`SessionManager.list_sessions` with a root adds the runs found on disk
(:func:`labsession.runs.scan_runs`), so runs of other processes, earlier runs and runs whose
process died show up too.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from labsession.runs._hooks import fire_session_close_hooks, fire_session_start_hooks
from labsession.runs._scan import (
    MAX_SCAN_DEPTH,
    SessionRecord,
    pid_alive,
    scan_runs,
    split_archive_name,
)

__all__ = [
    "MAX_SCAN_DEPTH",
    "SessionInfo",
    "SessionManager",
    "SessionRecord",
    "get_session_manager",
    "info_from_record",
    "pid_alive",
    "scan_runs",
    "split_archive_name",
]

logger = logging.getLogger(__name__)


class SessionInfo(dict):
    """One session, as the dict scitex-session documents; its keys also read as attributes.

    Attributes
    ----------
    config
        The live ``CONFIG`` (sessions started in this process; None for runs found on disk).
    start_time, end_time
        Start and end (naive local time); ``end_time`` is None until closed.
    status
        ``"running"``, ``"closed"`` (closed in this process: see ``final_status``), or for runs
        found on disk ``"interrupted"``, ``"success"``, ``"error"`` or ``"finished"``.
    script_path
        The script (str), if known.
    exit_code
        The exit status given at close (None until then).
    session_id, final_status, path, pid, host, archived
        labsession's additions: the run ID; the status given at close (``"success"``,
        ``"error"``...; None while running); the run folder or archive; the process and host
        that ran it; whether ``path`` is an archive file.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"session has no key {name!r}; keys: {sorted(self)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"session keys read as attributes but are set as keys: [{name!r}]")

    def to_dict(self) -> dict[str, Any]:
        """Return the session as JSON-ready data (without the live config)."""
        path, start, end = self.get("path"), self.get("start_time"), self.get("end_time")
        return {
            "session_id": self.get("session_id"),
            "status": self.get("status"),
            "final_status": self.get("final_status"),
            "path": str(path) if path else None,
            "script_path": self.get("script_path"),
            "pid": self.get("pid"),
            "host": self.get("host"),
            "start_time": start.isoformat() if isinstance(start, dt.datetime) else None,
            "end_time": end.isoformat() if isinstance(end, dt.datetime) else None,
            "exit_code": self.get("exit_code"),
            "archived": bool(self.get("archived")),
        }


def info_from_record(record: SessionRecord) -> SessionInfo:
    """Return a run found on disk as the :class:`SessionInfo` dict of :class:`SessionManager`."""
    return SessionInfo(
        config=record.config,
        start_time=record.start_time,
        status=record.status,
        script_path=record.script_path,
        end_time=record.end_time,
        exit_code=record.exit_code,
        session_id=record.session_id,
        final_status=None if record.status in ("running", "closed") else record.status,
        path=record.path,
        pid=record.pid,
        host=record.host,
        archived=record.archived,
    )


def _start_metadata(info: SessionInfo) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "sdir_run": str(info["path"]) if info["path"] is not None else None,
        "pid": info["pid"],
        "host": info["host"],
    }
    script = info["script_path"]
    if script is not None and script.endswith(".ipynb"):
        metadata["notebook_path"] = script
    return metadata


class SessionManager:
    """Registry of run sessions, with scitex-session's dict API (thread-safe).

    Every method returns :class:`SessionInfo` dicts (copies: change a session through
    :meth:`create_session` and :meth:`close_session`). Creating a session fires the start
    hooks and closing one fires the close hooks (see
    :func:`labsession.runs.register_session_start_hook`).

    Examples
    --------
    >>> manager = SessionManager()
    >>> sid = "2026Y-05M-17D-14h23m05s_a1B2"
    >>> _ = manager.create_session(sid, {"ID": sid})
    >>> [s["status"] for s in manager.get_active_sessions().values()]
    ['running']
    >>> _ = manager.close_session(sid, status="success", exit_code=0)
    >>> info = manager.get_session(sid)
    >>> info["status"], info["final_status"], info["exit_code"]
    ('closed', 'success', 0)
    >>> manager.get_session("unknown")
    {}
    """

    def __init__(self) -> None:
        self._sessions: dict[str, SessionInfo] = {}
        self._lock = threading.Lock()

    @property
    def active_sessions(self) -> dict[str, SessionInfo]:
        """Every session registered here, running or closed (a copy), as in scitex-session."""
        with self._lock:
            return {k: SessionInfo(v) for k, v in self._sessions.items()}

    def create_session(
        self,
        session_id: str,
        config: dict[str, Any] | None = None,
        script_path: str | os.PathLike[str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> SessionInfo:
        """Register a running session (replacing one of the same ID) and fire the start hooks.

        Parameters
        ----------
        session_id
            The run ID.
        config
            The run's ``CONFIG`` (kept by reference under ``"config"``).
        script_path
            The script (default: ``config["FILE"]``).
        path
            The run folder (default: ``config["SDIR_RUN"]``).

        Returns
        -------
        SessionInfo
            A copy of the new record.
        """
        config = config if config is not None else {}
        path = path if path is not None else config.get("SDIR_RUN")
        script = script_path if script_path is not None else config.get("FILE")
        info = SessionInfo(
            config=config,
            start_time=config.get("START_DATETIME") or dt.datetime.now(),
            status="running",
            script_path=os.fspath(script) if script is not None else None,
            end_time=None,
            exit_code=None,
            session_id=session_id,
            final_status=None,
            path=Path(path) if path is not None else None,
            pid=os.getpid(),
            host=socket.gethostname(),
            archived=False,
        )
        with self._lock:
            if session_id in self._sessions:
                logger.debug("session %s registered again: the new record replaces it", session_id)
            self._sessions[session_id] = info
        fire_session_start_hooks(session_id, info["script_path"], _start_metadata(info))
        return SessionInfo(info)

    def close_session(
        self,
        session_id: str,
        status: str = "success",
        exit_code: int | None = 0,
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> SessionInfo:
        """Mark a session ``"closed"``, keep ``status`` and ``exit_code``, fire the close hooks.

        Parameters
        ----------
        session_id
            The run ID; an ID never registered here is ignored (``{}`` is returned and no hook
            fires).
        status
            The final status, kept as ``"final_status"`` and passed to the close hooks.
        exit_code
            The exit status.
        path
            Where the run is now (its finished folder or archive).

        Returns
        -------
        SessionInfo
            A copy of the closed record, or ``{}`` for an unknown ID.
        """
        with self._lock:
            old = self._sessions.get(session_id)
            if old is None:
                new = None
            else:
                new = SessionInfo(old)
                new.update(
                    status="closed",
                    final_status=status,
                    exit_code=exit_code,
                    end_time=dt.datetime.now(),
                )
                if path is not None:
                    new.update(path=Path(path), archived=Path(path).is_file())
                self._sessions[session_id] = new
        if new is None:
            logger.debug("close_session(%r): no such session here; nothing to do", session_id)
            return SessionInfo()
        fire_session_close_hooks(status, exit_code)
        return SessionInfo(new)

    def get_session(self, session_id: str) -> SessionInfo:
        """Return (a copy of) the session registered here as ``session_id``, or ``{}``."""
        with self._lock:
            info = self._sessions.get(session_id)
            return SessionInfo(info) if info is not None else SessionInfo()

    def get_active_sessions(self) -> dict[str, SessionInfo]:
        """Return the sessions registered here whose status is ``"running"``."""
        with self._lock:
            running = {k: v for k, v in self._sessions.items() if v["status"] == "running"}
        return {k: SessionInfo(v) for k, v in running.items()}

    def list_sessions(self, root: str | os.PathLike[str] | None = None) -> dict[str, SessionInfo]:
        """Return every session registered here, plus the runs found under ``root``, by ID.

        ``root`` is an output folder, a status folder or a folder above them (see
        :func:`scan_runs`). A session both registered and on disk appears once, with its live
        record.
        """
        found = {}
        if root is not None:
            found = {r.session_id: info_from_record(r) for r in scan_runs(root)}
        with self._lock:
            found.update((k, SessionInfo(v)) for k, v in self._sessions.items())
        return dict(sorted(found.items()))


_MANAGER = SessionManager()


def get_session_manager() -> SessionManager:
    """Return the process-wide :class:`SessionManager` that :func:`start` and :func:`close` use."""
    return _MANAGER
