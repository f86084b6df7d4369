"""One entry of the sessions folder, read from its small files only: what a row of the list shows.

:func:`read_row` describes a session folder or ``.session.zip`` from ``meta.json``,
``labels.json`` and each stream's two array ``zarr.json`` files, and never opens Zarr (see
:mod:`labsession.widgets._session_index` for why). The validation is the recording layer's own
(``parse_meta``, ``parse_labels``, the archive-prefix rule of ``open_session_store``), plus the
arrays' shapes against ``meta.json``, so a row is readable only if opening the session would be.

Whatever sits in the folder, reading an entry is bounded and never blocks:

- only regular files are opened: a FIFO, socket or device (named ``x.session.zip`` or
  ``meta.json``) gives an error row, checked with ``lstat`` before the open and ``fstat`` after it
  (``O_NONBLOCK | O_NOFOLLOW``, so even a file swapped for a FIFO meanwhile cannot block);
- each small file is read up to :data:`MAX_SMALL_FILE` bytes (``labels.json`` up to the
  reader's larger cap), from a folder or a zip member (whose sizes in the archive may lie: the
  read itself is limited);
- symbolic links to folders are never followed (an error row says so): a link to a data share
  would otherwise be walked file by file; a symlinked ``.session.zip`` is followed to a regular
  file only;
- a folder's size is summed only once its ``meta.json`` is found, without following links, and
  a subfolder that cannot be read is skipped.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from labsession.core.paths import file_kind, read_at_most, tree_size
from labsession.errors import SessionError
from labsession.recording._layout import (
    LABELS_FILE,
    META_FILE,
    ZIP_SUFFIX,
    data_array_name,
    parse_labels,
    parse_meta,
    timestamps_array_name,
    zip_prefix,
)
from labsession.recording._records import UNLABELLED, StreamInfo
from labsession.recording._schema import (
    ARRAY_META_MAX_BYTES,
    LABELS_MAX_BYTES,
    META_MAX_BYTES,
    NUMERIC_DTYPES,
    ArrayLayout,
    check_stream_layout,
    load_json,
    shown,
)
from labsession.widgets._session_rows import SessionRow, StreamSummary

__all__ = [
    "MAX_SMALL_FILE",
    "Entry",
    "Stamp",
    "entry_stamp",
    "list_entries",
    "read_entry",
    "read_row",
]

log = logging.getLogger(__name__)

#: Largest ``meta.json`` or array ``zarr.json`` read (bytes); a bigger one makes the row an error
#: rather than filling the memory. ``labels.json`` may be as large as ``open_session_store``
#: allows (:data:`~labsession.recording._schema.LABELS_MAX_BYTES`).
MAX_SMALL_FILE = META_MAX_BYTES

_ARRAY_META = ("zarr.json", ".zarray")  # Zarr v3, then v2
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_LINK_TO_FOLDER = "symbolic link to a folder: not followed (move or copy the session here)"

#: Stamp of an entry: ``(mtime_ns, size)``; for a folder the newest mtime and total size of the
#: folder itself, meta.json, labels.json and each array's zarr.json.
Stamp = tuple[int, int]


class Entry(NamedTuple):
    """An entry of the base folder worth a row: a folder, a ``.session.zip``, or a bad one."""

    is_dir: bool
    #: Why the entry is listed but not read (a symbolic link to a folder, a link loop).
    error: str | None = None


# -- bounded reads ---------------------------------------------------------------------------------


def _cap(name: str) -> int:
    """Most bytes read of small file ``name`` (a path within the session)."""
    base = name.rsplit("/", 1)[-1]
    if base == LABELS_FILE:
        return LABELS_MAX_BYTES
    return ARRAY_META_MAX_BYTES if base in ("zarr.json", ".zarray", ".zattrs") else MAX_SMALL_FILE


def _too_big(name: str, size: int | str) -> SessionError:
    return SessionError(
        f"{name} is {size} bytes, more than the {_cap(name)} bytes a session's small file "
        f"may hold: not read"
    )


def _open_regular(path: str, shown: str, *, follow: bool) -> int:
    """An fd of ``path`` (``shown`` in errors) if it is a regular file; never blocks (a FIFO
    is refused before the open, and one swapped in meanwhile opens without waiting)."""
    st = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise SessionError(f"{shown} is {file_kind(st.st_mode)}, not a file")
    fd = os.open(path, _OPEN_FLAGS | (0 if follow else os.O_NOFOLLOW))
    st = os.fstat(fd)  # swapped for something else since the stat?
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SessionError(f"{shown} is {file_kind(st.st_mode)}, not a file")
    return fd


def _read_small_file(folder: str, name: str) -> bytes | None:
    """The bytes of ``folder/name`` (``None`` if absent), if a regular file of a bounded size."""
    path = os.path.join(folder, name)
    try:
        fd = _open_regular(path, name, follow=False)
    except (FileNotFoundError, NotADirectoryError):  # absent (or its folder is a file)
        return None
    cap = _cap(name)
    try:
        size = os.fstat(fd).st_size
        if size > cap:
            raise _too_big(name, size)
        raw = read_at_most(fd, cap, size=size)
    finally:
        os.close(fd)
    if len(raw) > cap:  # grew since the fstat
        raise _too_big(name, f"more than {cap}")
    return raw


def _read_member(zf: zipfile.ZipFile, member: str, shown: str) -> bytes:
    """A zip member's bytes, never more than its cap (its declared size may lie)."""
    info, cap = zf.getinfo(member), _cap(shown)
    if info.file_size > cap:
        raise _too_big(shown, info.file_size)
    with zf.open(info) as file:  # zipfile stops at the declared size (then checks the CRC)
        raw = file.read(info.file_size + 1)
    if len(raw) > cap:
        raise _too_big(shown, f"more than {cap} (its declared size, {info.file_size})")
    return raw


# -- reading one entry -----------------------------------------------------------------------------
def _created(meta_created: object, name: str) -> datetime | None:
    """Start time from ``meta.json`` (local, naive, so rows compare), else from the name."""
    try:
        created = datetime.fromisoformat(str(meta_created))
        return created.astimezone().replace(tzinfo=None) if created.tzinfo else created
    except ValueError:
        pass
    try:  # YYYY-MM-DD_HH-MM-SS_<8 hex>
        return datetime.strptime(name[:19], "%Y-%m-%d_%H-%M-%S")
    except ValueError:
        return None


def _array_layout(get: Callable[[str], bytes | None], array: str, stream: str, where: str):
    """The :class:`ArrayLayout` in the metadata of ``array``; raises naming it if missing or bad.

    Zarr v2 metadata (``.zarray``) gives the shape only (its type and chunks are not checked).
    """
    raw = next((r for f in _ARRAY_META if (r := get(f"{array}/{f}")) is not None), None)
    if raw is None:
        raise SessionError(
            f"{where}: stream {stream!r} is listed in meta.json but {array} is missing"
        )
    try:
        meta = load_json(raw)
        if not isinstance(meta, dict):
            raise TypeError(f"{shown(meta)} is not an object")
        shape = meta["shape"]
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise TypeError(f"shape {shown(shape)} is not a list of sizes")
        if meta.get("zarr_format") != 3:
            return ArrayLayout(array, tuple(shape), None, "", ())
        chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
        if not isinstance(chunks, list) or not all(type(n) is int for n in chunks):
            raise TypeError(f"chunk_shape {shown(chunks)} is not a list of sizes")
        data_type = meta["data_type"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SessionError(f"{where}: {array}: unreadable array metadata ({exc!r})") from exc
    known = isinstance(data_type, str) and data_type in NUMERIC_DTYPES
    dtype = np.dtype(data_type) if known else None
    return ArrayLayout(
        array, tuple(shape), dtype, str(dtype) if known else shown(data_type), (tuple(chunks),)
    )


def _stream(get, stream: str, info: StreamInfo, *, where: str) -> int:
    """Samples of ``stream``, after checking both arrays against ``meta.json`` as
    :func:`~labsession.recording.open_session_store` does (shapes, types, chunk sizes).

    The arrays' lengths may differ (a folder after a crash mid-write): the samples are then the
    shorter length, as :func:`~labsession.recording.open_session_store` reads them.
    """
    n_channels = info.n_channels
    ts_array, data_array = timestamps_array_name(stream), data_array_name(stream)
    ts = _array_layout(get, ts_array, stream, where)
    data = _array_layout(get, data_array, stream, where)
    if len(ts.shape) != 1:
        raise SessionError(f"{where}: {ts_array} has shape {ts.shape}; expected (n_samples,)")
    if len(data.shape) != 2 or data.shape[1] != n_channels:
        raise SessionError(
            f"{where}: {data_array} has shape {data.shape}, but meta.json gives stream "
            f"{stream!r} {n_channels} channels: expected (n_samples, {n_channels})"
        )
    if data.chunk_shapes and ts.chunk_shapes:  # both Zarr v3
        try:
            check_stream_layout(n_channels, info.dtype, data, ts)
        except ValueError as exc:
            raise SessionError(f"{where}: stream {stream!r}: {exc}") from None
    return min(data.shape[0], ts.shape[0])


def _describe(
    path: Path, *, packed: bool, get: Callable[[str], bytes | None], stamp: Stamp
) -> SessionRow:
    """Build the row of ``path`` from ``get(member) -> bytes | None`` (a file of the session);
    ``size_bytes`` is the stamp's size (the caller replaces it for a folder)."""
    where = str(path)
    meta_raw = get(META_FILE)
    if meta_raw is None:
        raise SessionError(f"{where}: not a session folder (no {META_FILE})")
    meta = parse_meta(meta_raw, where=where)
    labels = parse_labels(get(LABELS_FILE), where=where)
    class_names = tuple(str(n) for n in meta.get("class_names") or [])
    streams = [
        StreamSummary(
            stream,
            info.n_channels,
            info.fs,
            _stream(get, stream, info, where=where),
        )
        for stream, info in meta["streams"].items()
    ]
    counts = Counter(
        class_names[e.class_index] if e.class_index < len(class_names) else str(e.class_index)
        for e in labels
        if e.class_index != UNLABELLED
    )
    return SessionRow(
        name=path.name,
        path=path,
        packed=packed,
        created=_created(meta.get("created"), path.name),
        duration_s=streams[0].n_samples / streams[0].fs if streams else None,
        approximate=not packed,
        streams=tuple(streams),
        class_names=class_names,
        label_counts=dict(counts),
        size_bytes=stamp[1],
        newest_mtime=stamp[0] / 1e9,
    )


def _read_zip(path: Path, stamp: Stamp) -> SessionRow:
    fd = _open_regular(os.fspath(path), path.name, follow=True)  # a link is fine; a FIFO not
    try:
        with os.fdopen(fd, "rb") as file, zipfile.ZipFile(file) as zf:
            names = set(zf.namelist())
            prefix = zip_prefix(path, names)

            def get(name: str) -> bytes | None:
                member = prefix + name
                return _read_member(zf, member, name) if member in names else None

            return _describe(path, packed=True, get=get, stamp=stamp)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        NotImplementedError,
        zlib.error,
    ) as exc:
        raise SessionError(f"{path}: the .session.zip is corrupt or truncated ({exc})") from exc


def _read_folder(path: Path, stamp: Stamp) -> SessionRow:
    root = os.fspath(path)  # plain strings: pathlib costs a third of a scan of 500 folders
    row = _describe(path, packed=False, get=lambda name: _read_small_file(root, name), stamp=stamp)
    return replace(row, size_bytes=tree_size(root))  # only once it is known to be a session


def entry_stamp(path: Path, entry: Entry) -> Stamp:
    """``(mtime_ns, size)`` of a zip (or of the link of a bad entry); for a folder the newest
    mtime and summed size of its small files (meta, labels, each array's zarr.json, which every
    write of samples rewrites). Raises ``OSError`` if ``path`` cannot be stat'ed."""
    if entry.error is not None:
        st = os.lstat(path)
        return st.st_mtime_ns, st.st_size
    if not entry.is_dir:
        st = os.stat(path)
        return st.st_mtime_ns, st.st_size
    st = os.lstat(path)
    newest, size = st.st_mtime_ns, 0
    with os.scandir(path) as entries:
        for sub_entry in entries:
            try:
                if sub_entry.name in (META_FILE, LABELS_FILE):
                    sub = sub_entry.stat(follow_symlinks=False)
                elif sub_entry.name.endswith(".zarr"):
                    sub = os.lstat(os.path.join(sub_entry.path, "zarr.json"))
                else:
                    continue
            except OSError:  # removed meanwhile, or unreadable: the read will say why
                continue
            newest, size = max(newest, sub.st_mtime_ns), size + sub.st_size
    return newest, size


def _classify(path: str, name: str, is_link: bool, is_dir: Callable[[], bool]) -> Entry | None:
    """The :class:`Entry` of one name of the base folder, or ``None`` if it is not listed."""
    if is_link:
        if name.endswith(ZIP_SUFFIX):
            return Entry(is_dir=False)  # followed when read, to a regular file only
        try:
            target = os.stat(path)
        except FileNotFoundError:
            return None  # a dangling link to something that is not a session
        except OSError as exc:  # a link loop, a denied target
            return Entry(
                is_dir=False, error=f"symbolic link that cannot be followed ({exc.strerror})"
            )
        return Entry(is_dir=True, error=_LINK_TO_FOLDER) if stat.S_ISDIR(target.st_mode) else None
    if is_dir():
        return Entry(is_dir=True)
    return Entry(is_dir=False) if name.endswith(ZIP_SUFFIX) else None


def list_entries(base: Path) -> dict[str, Entry] | None:
    """``{name: entry}`` of the folders and ``.session.zip`` files in ``base`` (hidden ones, such
    as the temporary files of atomic writes, skipped); ``None`` if ``base`` is missing.

    An entry that cannot be told apart (a link loop, a link to a folder) is listed with its
    ``error``: one bad entry never hides the others. Raises ``OSError`` if ``base`` cannot be
    listed (permission denied).
    """
    found: dict[str, Entry] = {}
    try:
        with os.scandir(base) as entries:
            for e in entries:
                if e.name.startswith("."):
                    continue
                try:
                    entry = _classify(
                        e.path, e.name, e.is_symlink(), lambda e=e: e.is_dir(follow_symlinks=False)
                    )
                except FileNotFoundError:  # removed since the listing
                    continue
                except OSError as exc:
                    entry = Entry(is_dir=False, error=f"cannot be examined ({exc.strerror})")
                if entry is not None:
                    found[e.name] = entry
    except (FileNotFoundError, NotADirectoryError):
        return None
    return found


def read_entry(path: Path, entry: Entry, stamp: Stamp) -> SessionRow:
    """The row of ``path`` (an error row if it cannot be read; never raises)."""
    if entry.error is not None:
        reason = entry.error
    else:
        try:
            return _read_folder(path, stamp) if entry.is_dir else _read_zip(path, stamp)
        except (SessionError, OSError) as exc:
            reason = str(exc) if isinstance(exc, SessionError) else f"{path}: {exc}"
        except Exception as exc:  # a case the parsers do not foresee: still a row, never a crash
            log.exception("unexpected error reading %s", path)
            reason = f"{path}: cannot be read ({type(exc).__name__}: {exc})"
    return SessionRow(
        path.name,
        path,
        packed=not entry.is_dir,
        created=_created(None, path.name),
        size_bytes=0 if entry.is_dir else stamp[1],
        newest_mtime=stamp[0] / 1e9,
        error=reason.removeprefix(f"{path}: "),
    )


def read_row(path: str | os.PathLike[str]) -> SessionRow:
    """Describe one session folder or ``.session.zip`` from its small files; never raises.

    An entry that cannot be read (corrupt or truncated zip, bad ``meta.json``, missing arrays,
    not a session, not a regular file, a symbolic link to a folder) gives a row whose ``error``
    says why.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
        entry = _classify(
            os.fspath(path), path.name, stat.S_ISLNK(st.st_mode), lambda: stat.S_ISDIR(st.st_mode)
        ) or Entry(is_dir=False)
        return read_entry(path, entry, entry_stamp(path, entry))
    except OSError as exc:
        return SessionRow(path.name, path, packed=False, error=str(exc))
