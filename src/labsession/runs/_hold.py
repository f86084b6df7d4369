"""A lock on a run's archive, held while one copy of the run (folder or archive) is removed.

Archiving removes a run folder once its archive holds it; restoring with ``remove_archive``
removes the archive once the folder holds it. Two calls at once over one folder (an archive and
a restore, or a stopped call's resume beside a new call) could each check the other copy, then
each remove its own: both copies gone. So each removes only while holding an exclusive
``flock`` on the archive file, taken without waiting (a busy archive is left to a later call,
never waited for: no two calls can then wait on each other), and only if the archive is still
the very file it checked. The archive is opened for writing where allowed (never written to):
NFS emulates ``flock`` with a POSIX lock, which is exclusive only on a file open for writing.
Windows, and file systems where locking fails, remove without the lock (logged).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from labsession.errors import ArchiveError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["ArchiveHold", "same_file", "still_at"]

logger = logging.getLogger(__name__)


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two statuses are of the very same file (device and inode)."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def still_at(path: Path, status: os.stat_result) -> bool:
    """Whether the file at ``path`` is still the very file of ``status``."""
    try:
        return same_file(os.stat(path), status)
    except FileNotFoundError:
        return False


class ArchiveHold:
    """An exclusive lock on archive ``archive``, from :meth:`acquire` to :meth:`release`.

    Use as ``with ArchiveHold(path) as archive_status:``; the status is that of the archive
    now locked (the file at ``path``), or None when no file is at ``path`` any more.

    Raises
    ------
    ArchiveError
        From :meth:`acquire`, if another call holds the lock.
    """

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self._fd: int | None = None

    def acquire(self) -> os.stat_result | None:
        """Lock the archive; its status, or None if no file is at its path any more."""
        # For writing where allowed (never written): NFS emulates flock with a POSIX lock,
        # which needs a file open for writing to be exclusive.
        flags = getattr(os, "O_BINARY", 0)
        try:
            try:
                fd = os.open(self.archive, os.O_RDWR | flags)
            except FileNotFoundError:
                raise
            except OSError:  # read-only file or file system
                fd = os.open(self.archive, os.O_RDONLY | flags)
        except FileNotFoundError:
            return None
        self._fd = fd
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.release()
                raise ArchiveError(
                    f"{self.archive}: another call is archiving or restoring this run now; "
                    "both copies kept (run again once it is done)"
                ) from None
            except OSError as exc:  # a file system without flock (some network shares)
                logger.warning("%s: cannot be locked (%s); going on without", self.archive, exc)
        held = os.fstat(fd)
        return held if still_at(self.archive, held) else None

    def release(self) -> None:
        """Unlock (close) the archive; nothing if not held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> os.stat_result | None:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
