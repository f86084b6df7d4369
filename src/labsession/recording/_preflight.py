"""Checks before a recording starts: a writable folder with room, and sessions left unfinished."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from labsession.errors import SessionError
from labsession.recording._layout import META_FILE
from labsession.recording._lock import session_lock_holder
from labsession.recording._records import StreamInfo

__all__ = ["SpaceCheck", "check_recording_space", "data_rate", "find_unfinished_sessions"]

log = logging.getLogger(__name__)

#: Bytes of one timestamp (float64) stored with every sample.
_TIMESTAMP_BYTES = 8


def data_rate(infos: Iterable[StreamInfo]) -> float:
    """Bytes per second the streams ``infos`` write, uncompressed (samples and timestamps).

    Compression usually stores less (a flat signal much less); the uncompressed rate is the
    bound a full disk is measured against.
    """
    return sum(
        info.fs * (info.n_channels * info.dtype.itemsize + _TIMESTAMP_BYTES) for info in infos
    )


@dataclass(frozen=True)
class SpaceCheck:
    """What :func:`check_recording_space` found.

    Attributes
    ----------
    folder
        The folder checked (the sessions' base folder).
    free_bytes
        Space free to this user there (bytes).
    bytes_per_second
        The streams' uncompressed data rate (bytes/s).
    minutes_of_room
        How long the free space lasts at that rate (``inf`` for no data).
    """

    folder: Path
    free_bytes: int
    bytes_per_second: float
    minutes_of_room: float

    def message(self, min_minutes: float) -> str:
        """One line for the user: the room there is against the room wanted."""
        rate = self.bytes_per_second / 2**20
        return (
            f"{self.folder}: {self.free_bytes / 2**30:.2f} GiB free holds "
            f"{self.minutes_of_room:.1f} min of recording at {rate:.2f} MiB/s "
            f"(less than the {min_minutes:g} min wanted)"
        )


def check_recording_space(base_path: str | os.PathLike[str], bytes_per_second: float) -> SpaceCheck:
    """Check that sessions can be written under ``base_path`` and say how long its space lasts.

    The folder is created if missing (as a session would create it), then probed for
    writability with ``os.access``; nothing else is written.

    Raises
    ------
    SessionError
        If the folder cannot be created or is not writable, naming it and the cause.
    """
    folder = Path(base_path)
    if folder.exists() and not folder.is_dir():
        raise SessionError(f"{folder}: not a folder; sessions need a folder to go in")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SessionError(
            f"{folder}: cannot create the sessions folder ({exc.strerror or exc})"
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SessionError(f"{folder}: not writable by this user; sessions cannot be recorded")
    free = shutil.disk_usage(folder).free
    minutes = free / bytes_per_second / 60 if bytes_per_second > 0 else float("inf")
    return SpaceCheck(folder, free, float(bytes_per_second), minutes)


def find_unfinished_sessions(base_path: str | os.PathLike[str]) -> list[Path]:
    """Session folders under ``base_path`` that nobody is recording and that are not packed.

    A folder holding a ``meta.json`` with no live process holding its lock
    (:func:`~labsession.recording.session_lock_holder`): what a crash, a full disk or a kill
    left, including a kill between a pack's zip and the folder's removal (the zip is then
    beside it). Finish one with ``Session.attach(folder).pack_to_zip()`` (the GUI's session
    manager has a Finish button): it packs the folder again and replaces a zip of that name
    only if it is an earlier pack of the same recording (same ``meta.json`` ``created``) that
    the folder holds in full; a zip holding more (the folder is a stale or half-deleted copy)
    or another recording is not replaced: finishing is refused, naming both paths and what
    the zip holds more of, and nothing is changed or deleted. A folder whose lock path is not
    a lock file (a named pipe, a link, ...) is listed too, with a warning: finishing it is
    refused, naming that path. Hidden entries are skipped; nothing is read beyond a ``stat``
    per entry and the lock test, nothing blocks, and nothing is changed.
    """
    base = Path(base_path)
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return []
    unfinished = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        if not (folder / META_FILE).is_file():
            continue
        try:
            if session_lock_holder(folder) is not None:
                continue
        except SessionError as exc:
            log.warning("%s", exc)
        unfinished.append(folder)
    return unfinished
