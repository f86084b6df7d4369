"""Runs found on disk: :func:`scan_runs` reads run folders and archives, live or dead.

``<script>_out/`` (or any of its status folders, or a folder above several of them) is read
without importing or running anything: each run's status comes from the folder it sits in, and
its process, host, times and exit status from its ``CONFIGS/CONFIG.json`` (read from near the
start of an archive, within bounds). A folder left in ``RUNNING/`` whose process no longer
exists on this host has status ``"interrupted"``; so has one whose PID now belongs to a process
that started after the run (on Linux, by the process start time in ``/proc``), and so has an
archive in ``RUNNING/`` (a run that never closed, packed). A run folder whose process cannot be
probed (of another host, or with no PID recorded, as a live scitex-session run) stays
``"running"``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labsession.core.archive import TAR_FORMATS, read_leading_member
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
    "MAX_SCAN_DEPTH",
    "PID_START_SLACK",
    "SessionRecord",
    "pid_alive",
    "scan_runs",
    "split_archive_name",
]

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
    """One run found on disk (what :func:`scan_runs` returns).

    Attributes
    ----------
    session_id
        The run ID (the folder name).
    status
        ``"running"`` (a folder in RUNNING, its process alive or not to be probed: another
        host's, or none recorded), ``"interrupted"`` (left in RUNNING by a dead process, or an
        archive in RUNNING), ``"success"``,
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
    script_path
        The script that ran (``FILE`` in its ``CONFIGS/CONFIG.json``), if known.
    config
        The live ``CONFIG`` (None for runs found on disk).
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
    script_path: str | None = None
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


#: Seconds a process may seem to have started after its run's ``START_DATETIME`` and still be
#: the run's. A run records its start after its process started, and the process start time is
#: read to 10 ms (the boot time to the microsecond), so only a small step of the system clock
#: since then can make the run's own process seem later. A ``START_DATETIME`` given in whole
#: seconds (no fraction) gets one second more.
PID_START_SLACK = 0.5


def pid_alive(pid: int, *, started: dt.datetime | float | None = None) -> bool:
    """Return True if process ``pid`` exists on this host (and can be the run started then).

    Parameters
    ----------
    pid
        The process id.
    started
        When the run whose process this was started: seconds since the epoch (its
        ``START_TIMESTAMP``), or a naive local time (its ``START_DATETIME``, as runs before
        ``START_TIMESTAMP`` recorded it; read in this process's time zone). On Linux, a process
        that started more than :data:`PID_START_SLACK` seconds after it (a second more for a
        local time in whole seconds) holds a reused PID and is not the run's, and a zombie
        (killed, not yet reaped) is dead: both give False. Elsewhere, or when ``/proc`` cannot
        tell, only whether a process has the PID counts (a signal 0 probe).

    Returns
    -------
    bool
        Whether the process lives (and, with ``started``, can be the run's).
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:
        return False
    if started is None or not sys.platform.startswith("linux"):
        return True
    found = _linux_process(pid)
    if found is None:  # no /proc, or the process ended meanwhile: the probe's answer stands
        return True
    state, process_start = found
    if state == "Z":
        return False
    if isinstance(started, dt.datetime):
        slack = PID_START_SLACK + (1.0 if started.microsecond == 0 else 0.0)
        return process_start <= _local_timestamp(started) + slack
    return process_start <= started + PID_START_SLACK


def _linux_process(pid: int) -> tuple[str, float] | None:
    """State and start time (seconds since the epoch) of process ``pid`` from ``/proc``.

    The start time is field 22 of ``/proc/<pid>/stat``, in clock ticks since boot. None if it
    cannot be read.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
        # The command name (field 2) is in parentheses and may hold spaces or ")".
        fields = data.rpartition(b")")[2].split()
        state, ticks = fields[0].decode("ascii"), int(fields[19])
        return state, _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def _boot_time() -> float:
    """When this host booted, in seconds since the epoch (by today's system clock).

    ``CLOCK_BOOTTIME``, which the kernel counts process start times in, gives it to the
    microsecond; ``btime`` of ``/proc/stat`` (whole seconds) where that clock is missing.

    Raises
    ------
    OSError
        If neither can be read.
    """
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        try:
            return time.time() - time.clock_gettime(boottime)
        except OSError:
            pass
    with open("/proc/stat", "rb") as file:
        for line in file:
            if line.startswith(b"btime "):
                return float(line.split()[1])  # a ValueError if it is not a number
    raise OSError("/proc/stat: no btime line")


def _local_timestamp(when: dt.datetime) -> float:
    """Seconds since the epoch of ``when``; a naive local time repeated at a clock change
    (the hour that is lived twice) is read as its later instance."""
    if when.tzinfo is not None:
        return when.timestamp()
    return max(when.replace(fold=0).timestamp(), when.replace(fold=1).timestamp())


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
        return _as_config(config.read_bytes())
    except OSError:
        return {}


def _read_archived_config(archive: Path, session_id: str) -> dict[str, Any]:
    # CONFIGS/ sorts before the logs and lower-case names: near the start of the archive
    data = read_leading_member(
        archive, {f"{session_id}/CONFIGS/CONFIG.json", "CONFIGS/CONFIG.json"}
    )
    return {} if data is None else _as_config(data)


def _as_config(data: bytes) -> dict[str, Any]:
    try:
        config = json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        return {}
    return config if isinstance(config, dict) else {}


def _parse_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def may_still_run(run_dir: str | os.PathLike[str]) -> bool:
    """Whether the run folder ``run_dir``, in a ``RUNNING/`` folder, may have a live process.

    True when its process lives on this host, or cannot be probed (another host's run, or no
    PID recorded, as scitex-session runs until their close); False for a run whose process is
    gone. A reused PID is told only by the run's ``START_TIMESTAMP`` (seconds since the epoch),
    never by its naive local ``START_DATETIME``, which reads hours off in another time zone:
    an answer that leads to removing files errs on the side of a live run.
    """
    record = _record_from_disk(
        Path(run_dir), RUNNING, socket.gethostname(), local_start_counts=False
    )
    return record is not None and record.status == "running"


def _start_of(config: dict[str, Any], *, local_start_counts: bool) -> float | dt.datetime | None:
    """When the run started, for :func:`pid_alive`: its ``START_TIMESTAMP``, or else (when
    ``local_start_counts``) its naive local ``START_DATETIME``."""
    stamp = config.get("START_TIMESTAMP")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and math.isfinite(stamp):
        return float(stamp)
    return _parse_time(config.get("START_DATETIME")) if local_start_counts else None


def _record_from_disk(
    path: Path, folder: str, this_host: str, *, local_start_counts: bool = True
) -> SessionRecord | None:
    split = split_archive_name(path.name) if path.is_file() else None
    if path.is_dir() and is_run_id(path.name):
        session_id, archived = path.name, False
    elif split is not None:
        session_id, archived = split[0], True
    else:
        return None
    status = _FOLDER_STATUS.get(folder, "unknown")
    config = _read_archived_config(path, session_id) if archived else _read_config(path)
    pid = config.get("PID")
    host = config.get("HOST")
    recorded_start = _parse_time(config.get("START_DATETIME"))
    # An archive left in RUNNING/ is a run that never closed, packed once its process was gone
    # (runs archive skips one that may live): nothing writes to it any more.
    if status == "running" and archived:
        status = "interrupted"
    # A run whose process cannot be probed stays "running": one of another host, or one with no
    # PID recorded (scitex-session writes its config only at close).
    probed = status == "running" and host in (None, this_host)
    started = _start_of(config, local_start_counts=local_start_counts)
    if probed and isinstance(pid, int) and not pid_alive(pid, started=started):
        status = "interrupted"
    start = recorded_start
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
        script_path=config.get("FILE") if isinstance(config.get("FILE"), str) else None,
    )


#: How deep :func:`scan_runs` looks for ``<script>_out/`` folders below a root that holds none.
MAX_SCAN_DEPTH = 3


def _runs_here(root: Path, host: str) -> list[SessionRecord]:
    """The runs of ``root`` as an output folder (its status folders) or as one status folder."""
    folders = [(root / name, name) for name in STATUS_FOLDERS if (root / name).is_dir()]
    if not folders:  # resolved: "." or ".." (or a link) is named by the folder it is
        folders = [(root, root.resolve().name)]
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
