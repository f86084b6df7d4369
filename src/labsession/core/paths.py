"""Folders: where labsession keeps its own state (never the working directory), folder sizes,
output folders that a failed call does not leave behind."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["file_kind", "output_folder", "read_at_most", "tree_size", "user_state_dir"]

#: Environment variable that overrides :func:`user_state_dir` (tests, portable installs).
STATE_DIR_ENV = "LABSESSION_STATE_DIR"


def user_state_dir(create: bool = True) -> Path:
    """The folder for labsession's per-user state (window layouts, GUI settings).

    ``$LABSESSION_STATE_DIR`` if set; otherwise ``$XDG_STATE_HOME/labsession`` (default
    ``~/.local/state/labsession``) on Linux, ``%LOCALAPPDATA%\\labsession`` on Windows and
    ``~/Library/Application Support/labsession`` on macOS.

    Parameters
    ----------
    create
        Create the folder (and its parents) if it does not exist.
    """
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        folder = Path(override)
    elif sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
        folder = Path(base) / "labsession"
    elif sys.platform == "darwin":
        folder = Path.home() / "Library" / "Application Support" / "labsession"
    else:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        folder = Path(base) / "labsession"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Create the folder ``path`` (and its parents) for a call's output; yield it.

    If the block raises (an error, Ctrl-C) and this call created the folder, it is removed
    again when it is still empty, so a failed call leaves no empty output folder behind. A
    folder that existed before, or that holds anything, is never removed.
    """
    folder = Path(path)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        raise


def tree_size(folder: str | os.PathLike[str]) -> int:
    """Bytes of every file under ``folder``, links not followed (a link counts as itself).

    What cannot be read (a file removed or replaced meanwhile, a subfolder denied) is skipped,
    so a folder being written, or partly unreadable, still gets a size.
    """
    total, stack = 0, [os.fspath(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:  # a chunk replaced while we look
                        continue
        except OSError:  # a subfolder denied or removed
            continue
    return total


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words: ``a folder``, ``a named pipe``, ``a
    socket``, ``a character device``, ``a block device``, ``a symbolic link``, ``a file``."""
    kinds = (
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((text for test, text in kinds if test(mode)), "not a regular file")


def read_at_most(fd: int, limit: int, *, size: int | None = None) -> bytes:
    """Read from ``fd`` until its end or ``limit + 1`` bytes, whichever comes first.

    A result longer than ``limit`` tells the caller the file holds more than it may (its size
    as ``stat`` gave it can lie, or change while it is read). ``size``, the size ``fstat``
    gave, sizes the reads (one, unless the file grew), so no ``limit``-sized buffer is made.
    """
    parts, total = [], 0
    step = limit + 1 if size is None else max(size + 1, 1 << 16)
    while total <= limit:
        part = os.read(fd, min(step, limit + 1 - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)
