"""The lock of a live session folder: one writer at a time, across processes.

A session being recorded (or attached, or packed) holds an exclusive ``fcntl.flock`` on the file
``.<folder name>.lock`` beside its folder, and writes its process id, host and start time into
it. The kernel drops the lock when the holder exits, however it ends (even by SIGKILL), so a lock
file left by a dead process is simply taken over. POSIX only: on Windows sessions are not locked.

The file sits beside the folder, not inside it: the folder is packed file by file into the
session's zip, and the lock must stay held until the folder is gone. Its name starts with ``.``,
so session lists and readers never see it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from labsession.errors import SessionError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: sessions are not locked there
    fcntl = None  # type: ignore[assignment]

__all__ = ["LockHolder", "SessionLock", "lock_file", "session_lock_holder"]

log = logging.getLogger(__name__)

#: How long :meth:`SessionLock.acquire` retries a lock found held, for holders that only test it
#: (:func:`session_lock_holder` holds it for microseconds).
_RETRY_S = 0.2


@dataclass(frozen=True)
class LockHolder:
    """The process holding a session's lock (what it wrote in the lock file).

    Attributes
    ----------
    pid
        Its process id (``None`` if it had not written it yet).
    host
        The host it runs on (``None`` if unknown).
    started
        Local time it took the lock, ``YYYY-MM-DDTHH:MM:SS`` (``None`` if unknown).
    """

    pid: int | None
    host: str | None
    started: str | None

    def __str__(self) -> str:
        pid = "?" if self.pid is None else self.pid
        since = f" since {self.started}" if self.started else ""
        return f"process {pid} on {self.host or 'an unknown host'}{since}"


def lock_file(folder: str | os.PathLike[str]) -> Path:
    """The lock file of session folder ``folder``: ``.<name>.lock`` beside it."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.lock")


def _read_holder(fd: int) -> LockHolder:
    try:
        raw = os.pread(fd, 4096, 0)
        entry = json.loads(raw)
        return LockHolder(int(entry["pid"]), str(entry["host"]), str(entry["started"]))
    except (OSError, ValueError, KeyError, TypeError):  # being written, or never written
        return LockHolder(None, None, None)


def session_lock_holder(folder: str | os.PathLike[str]) -> LockHolder | None:
    """Who is writing session folder ``folder`` now: a :class:`LockHolder`, or ``None``.

    ``None`` means no live process holds the folder (a crashed recording, or one closed without
    packing): :meth:`Session.attach` can take it. A holder means a process (perhaps this one) is
    recording, attaching or packing it. Cheap (one open and one lock test); never blocks and
    changes nothing on disk.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(lock_file(folder), os.O_RDONLY)
    except OSError:  # no lock file: never locked, or released
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class SessionLock:
    """The exclusive lock of one session folder, held by this process.

    Parameters
    ----------
    folder
        The session folder (it need not exist yet for the lock file to be made beside it).
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.path = lock_file(self.folder)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (at once, or after another holder's quick test); idempotent.

        Raises
        ------
        SessionError
            Naming the folder and the holder's process id, host and start time, if another
            live process (or another session object of this one) holds it.
        """
        if self._fd is not None or fcntl is None:
            return
        deadline = time.monotonic() + _RETRY_S
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.005)
                    continue
                raise SessionError(
                    f"{self.folder}: the session is in use by {holder} (lock {self.path}); "
                    "it can be attached once that process has finished with it or ended"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            if self._same_file(fd):
                break
            # The file was released and removed between our open and our lock: try again.
            os.close(fd)
        stale = _read_holder(fd)
        if stale.pid is not None:
            log.info("%s: taking over the lock left by %s, which has ended", self.folder, stale)
        self._fd = fd
        self._write_holder(fd)

    def _same_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _write_holder(self, fd: int) -> None:
        entry = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(entry).encode(), 0)
        except OSError as exc:  # a full disk: the lock holds; only its description is missing
            log.warning("%s: could not write who holds the lock (%s)", self.path, exc.strerror)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent; never raises)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Removed while still held, so nobody can lock this file and believe it valid.
            if self._same_file(fd):
                os.unlink(self.path)
        except OSError as exc:
            log.warning("%s: could not remove the lock file (%s)", self.path, exc.strerror)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"SessionLock({str(self.folder)!r}, held={self.held})"
