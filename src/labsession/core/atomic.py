"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every writer goes through :func:`atomic_path`: the content is written to a temporary file beside
the target (same folder, hence same file system), flushed and fsynced, moved over the target with
:func:`os.replace`, and the folder is fsynced so the rename itself survives a power cut. If the
writer raises, the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_save_npy",
    "atomic_save_npz",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entry table to disk so a rename inside it is durable (no-op on Windows)."""
    if os.name == "nt":  # pragma: no cover - folders cannot be opened on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    Use it for writers that want a path rather than a file object (h5py, tifffile, zipfile).
    The temporary name starts with ``.`` and ends with ``.tmp`` so it never matches the patterns
    readers look for.

    Parameters
    ----------
    target
        Final path. Its folder must exist.
    fsync
        Flush the file and its folder to disk (set False only for scratch files).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "out.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (folder / "out.txt").read_text()
    'done'
    """
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(target.parent)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(
    target: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", fsync: bool = True
) -> Path:
    """Write ``text`` to ``target`` atomically and return the target path."""
    return atomic_write_bytes(target, text.encode(encoding), fsync=fsync)


def atomic_write_json(
    target: str | os.PathLike[str], obj: Any, *, indent: int | None = 2, fsync: bool = True
) -> Path:
    """Serialise ``obj`` as JSON (NaN refused) and write it to ``target`` atomically."""
    text = json.dumps(obj, indent=indent, allow_nan=False)
    return atomic_write_text(target, text + "\n", fsync=fsync)


def atomic_save_npy(target: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Save one array as ``.npy`` atomically (``numpy.save`` through a temporary file)."""
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return Path(target)


def atomic_save_npz(
    target: str | os.PathLike[str], *, compressed: bool = False, **arrays: Any
) -> Path:
    """Save named arrays as ``.npz`` atomically (``numpy.savez[_compressed]`` via a temp file)."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        save(f, **arrays)
    return Path(target)
