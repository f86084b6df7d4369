"""A registry of run sessions: the ones this process started, and the ones found on disk.

:class:`SessionManager` is thread-safe (one lock, held only to read or swap the registry). The
global instance, :func:`get_session_manager`, is what :func:`start` and :func:`close` update.
:meth:`SessionManager.list_sessions` with a root also reads run folders and archives from disk
(``<script>_out/`` or any of its status folders), so runs of other processes, earlier runs and
runs whose process died show up too: a folder left in ``RUNNING/`` whose process no longer exists
on this host has status ``"interrupted"``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import stat
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labsession.core.archive import TAR_FORMATS
from labsession.runs._ids import (
    FINISHED,
    FINISHED_ERROR,
    FINISHED_SUCCESS,
    RUNNING,
    STATUS_FOLDERS,
    id_start_time,
    is_run_id,
)

__all__ = [
    "SessionManager",
    "SessionRecord",
    "get_session_manager",
    "pid_alive",
    "scan_runs",
    "split_archive_name",
]

logger = logging.getLogger(__name__)

#: Status of a run by the folder it sits in (RUNNING is refined by whether its process lives).
_FOLDER_STATUS = {
    RUNNING: "running",
    FINISHED_SUCCESS: "success",
    FINISHED_ERROR: "error",
    FINISHED: "finished",
}
_ARCHIVE_SUFFIXES = tuple(sorted(("." + s for s in TAR_FORMATS), key=len, reverse=True))


@dataclass(frozen=True, kw_only=True)
class SessionRecord:
    """One run session, live or on disk.

    Attributes
    ----------
    session_id
        The run ID (the folder name).
    status
        ``"running"``, ``"interrupted"`` (left in RUNNING by a dead process), ``"success"``,
        ``"error"``, ``"finished"`` (closed without a status by another tool) or ``"closed"``.
    path
        The run folder or archive, if known.
    pid, host
        The process that ran it (from ``CONFIGS/CONFIG.json`` for runs found on disk).
    start_time, end_time
        Start and end (naive local time); ``end_time`` is None until closed.
    exit_code
        The exit status given to ``close``.
    archived
        Whether ``path`` is an archive file rather than a folder.
    config
        The live ``CONFIG`` (only for sessions this process started).
    """

    session_id: str
    status: str
    path: Path | None = None
    pid: int | None = None
    host: str | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    exit_code: int | None = None
    archived: bool = False
    config: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data (without the live config)."""
        return {
            "session_id": self.session_id,
            "status": self.status,
            "path": str(self.path) if self.path else None,
            "pid": self.pid,
            "host": self.host,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "exit_code": self.exit_code,
            "archived": self.archived,
        }


def pid_alive(pid: int) -> bool:
    """Return True if a process with this id exists on this host (signal 0 probe)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def split_archive_name(name: str) -> tuple[str, str] | None:
    """Split ``"<ID>.tar.gz"`` into ``("<ID>", "tar.gz")``; None if not a run archive name."""
    for suffix in _ARCHIVE_SUFFIXES:
        if name.endswith(suffix) and is_run_id(name[: -len(suffix)]):
            return name[: -len(suffix)], suffix[1:]
    return None


def _read_config(run_dir: Path) -> dict[str, Any]:
    config = run_dir / "CONFIGS" / "CONFIG.json"
    try:
        if not stat.S_ISREG(config.lstat().st_mode):  # a pipe or a link is never opened
            return {}
        return json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _parse_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _record_from_disk(path: Path, folder: str, this_host: str) -> SessionRecord | None:
    split = split_archive_name(path.name) if path.is_file() else None
    if path.is_dir() and is_run_id(path.name):
        session_id, archived = path.name, False
    elif split is not None:
        session_id, archived = split[0], True
    else:
        return None
    status = _FOLDER_STATUS.get(folder, "unknown")
    config = _read_config(path) if not archived else {}
    pid = config.get("PID")
    host = config.get("HOST")
    if status == "running" and not archived:
        same_host = host in (None, this_host)
        if same_host and (not isinstance(pid, int) or not pid_alive(pid)):
            status = "interrupted"
    start = _parse_time(config.get("START_DATETIME"))
    if start is None:
        try:
            start = id_start_time(session_id)
        except ValueError:
            start = None
    return SessionRecord(
        session_id=session_id,
        status=status,
        path=path,
        pid=pid if isinstance(pid, int) else None,
        host=host,
        start_time=start,
        end_time=_parse_time(config.get("END_DATETIME")),
        exit_code=config.get("EXIT_STATUS"),
        archived=archived,
    )


#: How deep :func:`scan_runs` looks for ``<script>_out/`` folders below a root that holds none.
MAX_SCAN_DEPTH = 3


def _runs_here(root: Path, host: str) -> list[SessionRecord]:
    """The runs of ``root`` as an output folder (its status folders) or as one status folder."""
    folders = [(root / name, name) for name in STATUS_FOLDERS if (root / name).is_dir()]
    if not folders:
        folders = [(root, root.name)]
    records = []
    for folder, name in folders:
        for entry in folder.iterdir():
            record = _record_from_disk(entry, name, host)
            if record is not None:
                records.append(record)
    return records


def _subfolders(folder: Path) -> list[Path]:
    """Folders directly inside ``folder``, by name: no hidden ones, no links, none unreadable."""
    try:
        with os.scandir(folder) as entries:
            found = [
                Path(e.path)
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
    except OSError:
        return []
    return sorted(found)


def _scan(root: Path, host: str, depth: int) -> list[SessionRecord]:
    records = _runs_here(root, host)
    if records or depth >= MAX_SCAN_DEPTH:
        return records
    for folder in _subfolders(root):
        if folder.name not in STATUS_FOLDERS:  # an empty status folder holds nothing deeper
            records.extend(_scan(folder, host, depth + 1))
    return records


def scan_runs(root: str | os.PathLike[str]) -> list[SessionRecord]:
    """Return the runs under ``root``, sorted by ID.

    ``root`` may be a script's output folder (holding ``RUNNING/``, ``FINISHED_SUCCESS/`` ...),
    one status folder itself, or a folder above them: when ``root`` holds no run, the folders
    below it (at most :data:`MAX_SCAN_DEPTH` levels down, hidden ones and links left out) are
    searched the same way, so the folder holding several ``<script>_out/`` lists them all.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder to list runs from")
    return sorted(_scan(root, socket.gethostname(), 0), key=lambda r: r.session_id)


class SessionManager:
    """Registry of run sessions (thread-safe).

    Examples
    --------
    >>> manager = SessionManager()
    >>> manager.create_session(
    ...     "2026Y-05M-17D-14h23m05s_a1B2", {"ID": "2026Y-05M-17D-14h23m05s_a1B2"}
    ... )
    >>> [r.status for r in manager.get_active_sessions().values()]
    ['running']
    >>> manager.close_session("2026Y-05M-17D-14h23m05s_a1B2", status="success", exit_code=0)
    >>> manager.get_session("2026Y-05M-17D-14h23m05s_a1B2").exit_code
    0
    """

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._lock = threading.Lock()

    def create_session(
        self,
        session_id: str,
        config: dict[str, Any] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> SessionRecord:
        """Register a running session and return its record.

        Raises
        ------
        ValueError
            If ``session_id`` is already registered and still running.
        """
        config = config or {}
        path = path if path is not None else config.get("SDIR_RUN")
        record = SessionRecord(
            session_id=session_id,
            status="running",
            path=Path(path) if path is not None else None,
            pid=os.getpid(),
            host=socket.gethostname(),
            start_time=config.get("START_DATETIME") or dt.datetime.now(),
            config=config,
        )
        with self._lock:
            old = self._sessions.get(session_id)
            if old is not None and old.status == "running":
                raise ValueError(f"session {session_id!r} is already registered and running")
            self._sessions[session_id] = record
        return record

    def close_session(
        self,
        session_id: str,
        status: str = "success",
        exit_code: int | None = 0,
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> SessionRecord:
        """Mark a session closed with ``status`` and ``exit_code`` and return its record.

        Raises
        ------
        KeyError
            If the session was never registered here.
        """
        with self._lock:
            try:
                old = self._sessions[session_id]
            except KeyError:
                raise KeyError(f"session {session_id!r} is not registered") from None
            new = replace(
                old,
                status=status,
                exit_code=exit_code,
                end_time=dt.datetime.now(),
                path=Path(path) if path is not None else old.path,
                archived=path is not None and Path(path).is_file(),
            )
            self._sessions[session_id] = new
        return new

    def get_session(self, session_id: str) -> SessionRecord | None:
        """Return the record of a session registered here, or None."""
        with self._lock:
            return self._sessions.get(session_id)

    def get_active_sessions(self) -> dict[str, SessionRecord]:
        """Return the sessions registered here that are still running."""
        with self._lock:
            return {k: v for k, v in self._sessions.items() if v.status == "running"}

    def list_sessions(self, root: str | os.PathLike[str] | None = None) -> dict[str, SessionRecord]:
        """Return every session: those registered here, plus the runs found under ``root``.

        ``root`` is an output folder, a status folder or a folder above them (see
        :func:`scan_runs`). A session both registered and on disk appears once, with its live
        record.
        """
        found = {r.session_id: r for r in scan_runs(root)} if root is not None else {}
        with self._lock:
            found.update(self._sessions)
        return dict(sorted(found.items()))


_MANAGER = SessionManager()


def get_session_manager() -> SessionManager:
    """Return the process-wide :class:`SessionManager` that :func:`start` and :func:`close` use."""
    return _MANAGER
