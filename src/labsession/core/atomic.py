"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every writer goes through :func:`atomic_path`: the content is written to a temporary file beside
the target (same folder, hence same file system), flushed and fsynced, moved over the target with
:func:`os.replace`, and the folder is fsynced so the rename itself survives a power cut. If the
writer raises, the temporary file is removed and the target is untouched.

Files and folders created here follow the process's umask (and a folder's default ACL), as files
made with :func:`open` do: :func:`create_temp_file` asks the kernel for mode ``0o666`` and
:func:`create_temp_dir` for ``0o777``, which the kernel then restricts. (:func:`tempfile.mkstemp`
and :func:`tempfile.mkdtemp` ask for ``0o600`` and ``0o700``, so lab mates on a shared server
could not read what was written.) The umask is never read or changed, so this is thread-safe and
a umask set after import is honoured.

The flush helpers (:func:`fsync_file`, :func:`fsync_dir`, :func:`flush_files`,
:func:`flush_trees`) make many files durable in one batch, e.g. before a source is removed.
:func:`replace_dir` is the folder twin of :func:`os.replace`; :func:`recover_replaced_dir` tidies
up after one a killed process left half done.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported by the two functions that save arrays only: the
    # bulk archive's spawned workers and `labsession runs` start ~90 ms sooner without it
    import numpy as np

__all__ = [
    "StagedFile",
    "atomic_path",
    "atomic_save_npy",
    "atomic_save_npz",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "create_temp_dir",
    "create_temp_file",
    "flush_files",
    "flush_trees",
    "fsync_dir",
    "fsync_file",
    "recover_replaced_dir",
    "rename_no_replace",
    "replace_dir",
]

_TEMP_FILE_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_TEMP_ATTEMPTS = 100  # as tempfile.TMP_MAX, for a name already taken


def _temp_names(folder: str | os.PathLike[str], prefix: str, suffix: str) -> Iterator[Path]:
    for _ in range(_TEMP_ATTEMPTS):
        yield Path(folder, f"{prefix}{secrets.token_hex(4)}{suffix}")
    raise FileExistsError(f"{folder}: no free temporary name {prefix}XXXXXXXX{suffix}")


def create_temp_file(folder: str | os.PathLike[str], prefix: str = "", suffix: str = "") -> Path:
    """Create a new empty file ``<prefix><8 hex digits><suffix>`` in ``folder``; return its path.

    Like :func:`tempfile.mkstemp` (never an existing path, never through a link), but the file's
    mode follows the umask (``0o644`` under umask ``022``) instead of ``0o600``.
    """
    for path in _temp_names(folder, prefix, suffix):
        try:
            os.close(os.open(path, _TEMP_FILE_FLAGS, 0o666))
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")  # pragma: no cover - _temp_names raises


def create_temp_dir(folder: str | os.PathLike[str], prefix: str = "", suffix: str = "") -> Path:
    """Create a new empty folder ``<prefix><8 hex digits><suffix>`` in ``folder``; return its path.

    Like :func:`tempfile.mkdtemp`, but its mode follows the umask (``0o755`` under ``022``).
    """
    for path in _temp_names(folder, prefix, suffix):
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")  # pragma: no cover - _temp_names raises


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush one file's data to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entry table to disk so a rename inside it is durable (no-op on Windows)."""
    if os.name == "nt":  # pragma: no cover - folders cannot be opened on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Threads :func:`flush_files` runs its fsync calls on.
FLUSH_THREADS = 4


def flush_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Flush files and their folders to disk, many at once.

    The fsync calls run in a few threads: the file system then commits them together (one
    journal flush for many files), several times faster than one after another. Four threads
    keep a journal commit busy; more only cost their start-up (about a millisecond each on a
    loaded machine, where a bulk archive flushes a batch every few dozen runs).
    """
    files = [Path(p) for p in paths]
    if not files:
        return
    if len(files) == 1:
        fsync_file(files[0])
    else:
        with ThreadPoolExecutor(max_workers=min(FLUSH_THREADS, len(files))) as pool:
            list(pool.map(fsync_file, files))
    for folder in sorted({p.parent for p in files}):
        fsync_dir(folder)


def flush_trees(roots: Iterable[str | os.PathLike[str]]) -> None:
    """Flush every file and folder under ``roots`` to disk (before removing their source).

    Symbolic links are not followed (a link's entry is flushed with its folder; its target may
    be missing).
    """
    walks = [list(os.walk(root)) for root in roots]
    flush_files(
        path
        for walk in walks
        for folder, _, files in walk
        for path in (Path(folder, name) for name in files)
        if not path.is_symlink()
    )
    for walk in walks:
        for folder, _dirs, _files in walk:
            fsync_dir(folder)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    Use it for writers that want a path rather than a file object (h5py, tifffile, zipfile).
    The temporary file exists (empty) when yielded; its name is ``.<target name>.<8 hex>.tmp``
    so it never matches the patterns readers look for. Its mode, and so the target's, follows
    the umask.

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
    try:
        tmp = create_temp_file(target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except FileExistsError:
        raise
    except OSError as exc:  # name the file asked for, not the temporary one beside it
        raise OSError(
            exc.errno, f"{exc.strerror} (cannot create a file in {target.parent})", str(target)
        ) from exc
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(target.parent)


class StagedFile:
    """A temporary file beside ``target`` that :meth:`commit` moves over it: :func:`atomic_path`
    for writers whose file stays open across calls (created, fed, then committed or aborted).

    Parameters
    ----------
    target
        Final path. Its folder must exist.
    fsync
        Flush the file and its folder to disk on commit.

    Attributes
    ----------
    tmp
        The temporary file to write (exists, empty, when the object is made).
    """

    def __init__(self, target: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self._context = atomic_path(target, fsync=fsync)
        self.tmp: Path = self._context.__enter__()

    def commit(self) -> None:
        """Flush the temporary file and rename it over the target (the temporary is removed if
        that fails)."""
        self._context.__exit__(None, None, None)

    def abort(self) -> None:
        """Remove the temporary file; the target is left as it was. Never raises."""
        with contextlib.suppress(Exception):
            self._context.__exit__(RuntimeError, RuntimeError("aborted"), None)


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
    import numpy as np

    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return Path(target)


def atomic_save_npz(
    target: str | os.PathLike[str], *, compressed: bool = False, **arrays: Any
) -> Path:
    """Save named arrays as ``.npz`` atomically (``numpy.savez[_compressed]`` via a temp file)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        save(f, **arrays)
    return Path(target)


@functools.cache
def _renameat2() -> Any:
    """glibc's ``renameat2`` (Linux 3.15+), or None where there is none (looked up once)."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_AT_FDCWD, _RENAME_NOREPLACE, _RENAME_EXCHANGE = -100, 1, 2


def rename_no_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` to ``dst``, never replacing anything at ``dst`` (not even an empty folder).

    On Linux one ``renameat2(RENAME_NOREPLACE)`` call decides it atomically; elsewhere (or on
    file systems without it) ``dst`` is checked first, which leaves a short race.

    Raises
    ------
    FileExistsError
        If ``dst`` exists.
    """
    function = _renameat2()
    if function is not None:
        old, new = os.fsencode(src), os.fsencode(dst)
        if function(_AT_FDCWD, old, _AT_FDCWD, new, _RENAME_NOREPLACE) == 0:
            return
        import ctypes

        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # else: not supported here, fall back
            raise OSError(err, os.strerror(err), os.fspath(src), None, os.fspath(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
    os.rename(src, dst)


def _exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap ``a`` and ``b`` in one ``renameat2(RENAME_EXCHANGE)`` call; False where unsupported."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):  # not supported here (kernel, file system)
        return False
    raise OSError(err, os.strerror(err), os.fspath(a), None, os.fspath(b))


def replace_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move the folder ``src`` to ``dst``, replacing what is there: the folder twin of os.replace.

    No reader finds ``dst`` half written: every file under it is from the old folder or from the
    new one. On Linux the two are swapped by one ``renameat2(RENAME_EXCHANGE)`` call, so ``dst``
    never stops existing; elsewhere the old one is first renamed aside (``dst`` is missing for
    that moment) and put back if the move fails. (A reader opening several files across the swap
    may get some from each, as with any folder.) The old content is then removed and the folder
    holding both is fsynced. ``src`` and ``dst`` must be on one file system (``src`` made by
    :func:`create_temp_dir` beside ``dst``); flush ``src``'s files first (:func:`flush_trees`).
    The name set aside is ``.<dst name>.<8 hex>.old``: after a kill, :func:`recover_replaced_dir`
    puts it back or removes it.
    """
    src, dst = Path(src), Path(dst)
    try:
        rename_no_replace(src, dst)
    except FileExistsError:
        if _exchange(src, dst):
            old = src
        else:
            old = next(_temp_names(dst.parent, f".{dst.name}.", ".old"))
            os.rename(dst, old)
            try:
                os.rename(src, dst)
            except BaseException:
                os.rename(old, dst)
                raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    fsync_dir(dst.parent)


def recover_replaced_dir(target: str | os.PathLike[str]) -> tuple[Path | None, list[Path]]:
    """Undo or finish a :func:`replace_dir` of ``target`` that a killed process left half done.

    Where folders cannot be swapped in one call, :func:`replace_dir` renames the old ``target``
    aside to ``.<target name>.<8 hex>.old`` before moving the new one in. A kill between the two
    renames leaves ``target`` missing and the earlier output only under that name (whole: it was
    renamed, never written); a kill while the old folder is removed leaves part of it. So: if
    ``target`` is missing, the most recently renamed such entry is renamed back to ``target``;
    every other one is removed (``target`` exists, they are superseded). Only entries of exactly
    that name in ``target``'s folder are touched; links are left alone, never followed. Call it
    while no other process writes ``target`` (e.g. when a run resumes).

    Parameters
    ----------
    target
        The path :func:`replace_dir` wrote (a folder, or a file it replaced).

    Returns
    -------
    restored : Path or None
        The entry renamed back to ``target``, or None.
    removed : list of Path
        The entries removed.

    Raises
    ------
    OSError
        If an entry cannot be renamed back or removed (the others are then left as they are).
    """
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{8}}\.old")
    try:
        entries = [p for p in target.parent.iterdir() if pattern.fullmatch(p.name)]
    except FileNotFoundError:
        return None, []
    asides = sorted(
        (p.lstat().st_ctime_ns, p.name, p) for p in entries if not p.is_symlink()
    )  # a rename sets the entry's ctime: the last is the latest output set aside
    restored = None
    if asides and not os.path.lexists(target):
        restored = asides.pop()[2]
        rename_no_replace(restored, target)
    removed = []
    for _, _, path in asides:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    if restored is not None or removed:
        fsync_dir(target.parent)
    return restored, removed
