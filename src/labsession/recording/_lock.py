"""The lock of a live session folder: one writer at a time, across processes.

A session being recorded (or attached, or packed) holds an exclusive ``fcntl.flock`` on the file
``.<folder name>.lock`` beside its folder, and writes its process id, host and start time into
it. The kernel drops the lock when the holder exits, however it ends (even by SIGKILL), so a lock
file left by a dead process is simply taken over. POSIX only: on Windows sessions are not locked.

The file sits beside the folder, not inside it: the folder is packed file by file into the
session's zip, and the lock must stay held until the folder is gone. Its name starts with ``.``,
so session lists and readers never see it.

The lock path is opened without following a symbolic link and without blocking, and must be a
regular file (with no other name, to be written): a link, a named pipe, a folder or a device
put there by someone else is never written, blocked on or removed. Such a folder cannot be
locked: :meth:`SessionLock.acquire` and :func:`session_lock_holder` raise
:class:`~labsession.errors.SessionError` naming the path and what it is.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from labsession.errors import SessionError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: sessions are not locked there
    fcntl = None  # type: ignore[assignment]

__all__ = ["LockHolder", "SessionLock", "discard_lock_file", "lock_file", "session_lock_holder"]

log = logging.getLogger(__name__)

#: How long :meth:`SessionLock.acquire` retries a lock found held, for holders that only test it
#: (:func:`session_lock_holder` holds it for microseconds).
_RETRY_S = 0.2
#: Every open of a lock path: never through a link, never blocking (a named pipe), not inherited.
_SAFE_OPEN = os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


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


def _what(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_lockable(folder: Path, path: Path, what: str) -> SessionError:
    return SessionError(
        f"{folder}: its lock file {path} is {what}, not a lock file, so the folder cannot be "
        "locked and is not attached or packed; labsession did not make it and leaves it as it "
        "is: remove it, then finish the session"
    )


def _open_lock(folder: Path, path: Path, flags: int) -> int:
    """Open the lock file ``path`` of ``folder`` (see the module's docstring for the checks).

    Raises
    ------
    SessionError
        If ``path`` is not a regular file (or, opened for writing, has other names).
    OSError
        If it cannot be opened (``FileNotFoundError`` without ``os.O_CREAT``).
    """
    try:
        fd = os.open(path, flags | _SAFE_OPEN, 0o666)
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP for a link, EISDIR for a folder, ENXIO for a socket, ...
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            raise exc from None
        if not stat.S_ISREG(mode):
            raise _not_lockable(folder, path, _what(mode)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_lockable(folder, path, _what(st.st_mode))
        if flags & (os.O_RDWR | os.O_WRONLY) and st.st_nlink > 1:
            raise _not_lockable(folder, path, f"a file with {st.st_nlink} names (hard links)")
    except BaseException:
        os.close(fd)
        raise
    return fd


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
    recording, attaching or packing it. Cheap (one ``lstat``, one open and one lock test); never
    blocks and changes nothing on disk.

    Raises
    ------
    SessionError
        If the lock path ``.<name>.lock`` is there but is not a regular file (a symbolic link,
        a named pipe, a folder, ...): no labsession process can hold such a folder, and none
        can attach it until that is removed. The message names the path and what it is.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    folder = Path(folder)
    path = lock_file(folder)
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # no lock file: never locked, or released
        return None
    if not stat.S_ISREG(mode):  # checked before opening: a device is never even opened
        raise _not_lockable(folder, path, _what(mode))
    try:
        fd = _open_lock(folder, path, os.O_RDONLY)
    except SessionError:
        raise
    except OSError:  # removed meanwhile (released), or unreadable to this user
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


def discard_lock_file(folder: str | os.PathLike[str]) -> bool:
    """Remove the lock file of ``folder`` if it is a regular file nobody holds; True if removed.

    For a folder that is gone (deleted after packing); never raises, never blocks, and never
    removes anything but a lock file: a lock path that is not a regular file is left, logged.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return False
    folder = Path(folder)
    path = lock_file(folder)
    try:
        fd = _open_lock(folder, path, os.O_RDWR)
    except FileNotFoundError:
        return False
    except (SessionError, OSError) as exc:
        log.warning("%s: left as it is (%s)", path, exc)
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live holder: it removes the file itself
        if not _same_file(path, fd):
            return False
        os.unlink(path)  # while held, as SessionLock.release does
        return True
    except OSError as exc:
        log.warning("%s: could not remove the stale lock file (%s)", path, exc.strerror)
        return False
    finally:
        os.close(fd)


def _same_file(path: Path, fd: int) -> bool:
    """Whether the name ``path`` (not followed if a link) is the file open as ``fd``."""
    try:
        on_disk = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


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
            live process (or another session object of this one) holds it; naming the lock
            path, if it is not a regular file with one name (a symbolic link, a named pipe, a
            folder, a hard link: it is left as it is) or cannot be created or opened.
        """
        if self._fd is not None or fcntl is None:
            return
        deadline = time.monotonic() + _RETRY_S
        while True:
            try:
                fd = _open_lock(self.folder, self.path, os.O_RDWR | os.O_CREAT)
            except OSError as exc:
                raise SessionError(
                    f"{self.folder}: cannot open its lock file {self.path} ({exc.strerror or exc})"
                ) from exc
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
            if _same_file(self.path, fd):
                break
            # The file was released and removed between our open and our lock: try again.
            os.close(fd)
        stale = _read_holder(fd)
        if stale.pid is not None:
            log.info("%s: taking over the lock left by %s, which has ended", self.folder, stale)
        self._fd = fd
        self._write_holder(fd)

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
            if _same_file(self.path, fd):
                os.unlink(self.path)
        except OSError as exc:
            log.warning("%s: could not remove the lock file (%s)", self.path, exc.strerror)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"SessionLock({str(self.folder)!r}, held={self.held})"
