"""The sessions under a folder, read cheaply and cached: what the session manager lists.

:func:`read_row` describes one session folder or ``.session.zip`` from its small files only
(``meta.json``, ``labels.json`` and each stream's timestamp ``zarr.json``) and never opens Zarr:
:func:`labsession.recording.session_summary` opens every array with Zarr and reads the
timestamps, 6-13 ms per small session against ~0.45 ms here (``benchmarks/session_list.py``):
seconds for a folder of hundreds. The validation is the recording layer's own (``parse_meta``,
``parse_labels``, and the archive-prefix rule of ``open_session_store``), so a bad ``meta.json``
or ``labels.json`` gives the same reason as opening the session would.

:class:`SessionIndex` keeps one :class:`SessionRow` per entry, keyed by the entry's name and its
stamp (modification time in ns and size; for a folder, those of its small files), so an
unchanged session is never read twice. Scans run on a background thread; the GUI thread only
calls :meth:`SessionIndex.poll`, which stats the base folder at most every ``poll_interval``
seconds. No imgui here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from labsession.errors import SessionError
from labsession.recording._layout import (
    LABELS_FILE,
    META_FILE,
    ZIP_SUFFIX,
    parse_labels,
    parse_meta,
    timestamps_array_name,
    zip_prefix,
)
from labsession.recording._records import UNLABELLED
from labsession.widgets._tasks import TaskQueue

__all__ = ["SessionIndex", "SessionRow", "StreamSummary", "read_row"]

log = logging.getLogger(__name__)

_ARRAY_META = ("zarr.json", ".zarray")  # Zarr v3, then v2
_UNSEEN = object()
_PUBLISH_INTERVAL = 0.05  # s between two version bumps during a scan

#: Stamp of an entry: ``(mtime_ns, size)``; for a folder the newest mtime and total size of the
#: folder itself, meta.json, labels.json and each array's zarr.json.
Stamp = tuple[int, int]


@dataclass(frozen=True)
class StreamSummary:
    """One stream of a listed session (``n_samples`` from the timestamp array's shape)."""

    name: str
    n_channels: int
    fs: float
    n_samples: int


@dataclass(frozen=True)
class SessionRow:
    """What the session list shows of one entry of the base folder.

    Attributes
    ----------
    name
        File or folder name (``###session_<name>`` in the GUI).
    path
        The folder or ``.session.zip``.
    packed
        True for a ``.session.zip``.
    created
        Start time, from ``meta.json`` ``created`` or the folder name; ``None`` if neither.
    duration_s
        Samples of the first stream over its rate (``None`` without streams). For a folder the
        shape may count samples of a write cut short by a crash: see ``approximate``.
    approximate
        True for folders, whose arrays may hold a slot or two never written.
    streams
        The streams in ``meta.json`` order.
    class_names
        ``class_names`` of ``meta.json`` (empty if none).
    label_counts
        Labels per class name (class index as text when unnamed); unlabelled (-1) not counted.
    size_bytes
        Bytes on disk (every file of a folder).
    newest_mtime
        Newest modification time (s since the epoch) of the files the stamp covers.
    error
        Why the session cannot be read (``None`` when it can); the other fields are then
        as far as they were read.
    """

    name: str
    path: Path
    packed: bool
    created: datetime | None = None
    duration_s: float | None = None
    approximate: bool = False
    streams: tuple[StreamSummary, ...] = ()
    class_names: tuple[str, ...] = ()
    label_counts: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    newest_mtime: float = 0.0
    error: str | None = None

    @property
    def n_labels(self) -> int:
        """Labels of a class (unlabelled ones not counted)."""
        return sum(self.label_counts.values())


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


def _array_length(raw: bytes, where: str) -> int:
    try:
        shape = json.loads(raw)["shape"]
        return int(shape[0])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as exc:
        raise SessionError(f"{where}: unreadable array metadata ({exc!r})") from exc


def _describe(
    path: Path, *, packed: bool, get: Callable[[str], bytes | None], size_bytes: int, stamp: Stamp
) -> SessionRow:
    """Build the row of ``path`` from ``get(member) -> bytes | None`` (a file of the session)."""
    where = str(path)
    meta_raw = get(META_FILE)
    if meta_raw is None:
        raise SessionError(f"{where}: not a session folder (no {META_FILE})")
    meta = parse_meta(meta_raw, where=where)
    labels = parse_labels(get(LABELS_FILE), where=where)
    class_names = tuple(str(n) for n in meta.get("class_names") or [])
    streams = []
    for stream, info in meta["streams"].items():
        array = timestamps_array_name(stream)
        raw = next((r for f in _ARRAY_META if (r := get(f"{array}/{f}")) is not None), None)
        if raw is None:
            raise SessionError(
                f"{where}: stream {stream!r} is listed in meta.json but {array} is missing"
            )
        n = _array_length(raw, f"{where}: {array}")
        streams.append(StreamSummary(stream, info.n_channels, info.fs, n))
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
        size_bytes=size_bytes,
        newest_mtime=stamp[0] / 1e9,
    )


def _read_zip(path: Path, stamp: Stamp) -> SessionRow:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            prefix = zip_prefix(path, names)

            def get(name: str) -> bytes | None:
                return zf.read(prefix + name) if prefix + name in names else None

            return _describe(path, packed=True, get=get, size_bytes=stamp[1], stamp=stamp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise SessionError(f"{path}: the .session.zip is corrupt or truncated ({exc})") from exc


def _read_folder(path: Path, stamp: Stamp) -> SessionRow:
    root = os.fspath(path)  # plain strings: pathlib costs a third of a scan of 500 folders

    def get(name: str) -> bytes | None:
        try:
            with open(os.path.join(root, name), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    return _describe(path, packed=False, get=get, size_bytes=_tree_size(root), stamp=stamp)


def _tree_size(folder: str) -> int:
    """Bytes of every file under ``folder`` (files removed meanwhile are skipped)."""
    total, stack = 0, [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:  # a chunk replaced while we look
                        continue
        except FileNotFoundError:
            continue
    return total


def _stamp(path: Path, is_dir: bool) -> Stamp:
    """``(mtime_ns, size)`` of a zip; for a folder the newest mtime and summed size of its
    small files (meta, labels, each array's zarr.json, which every write of samples rewrites)."""
    st = os.stat(path)
    if not is_dir:
        return st.st_mtime_ns, st.st_size
    newest, size = st.st_mtime_ns, 0
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                if entry.name in (META_FILE, LABELS_FILE):
                    sub = entry.stat()
                elif entry.name.endswith(".zarr"):
                    sub = os.stat(os.path.join(entry.path, "zarr.json"))
                else:
                    continue
            except FileNotFoundError:
                continue
            newest, size = max(newest, sub.st_mtime_ns), size + sub.st_size
    return newest, size


def read_row(path: str | os.PathLike[str]) -> SessionRow:
    """Describe one session folder or ``.session.zip`` from its small files; never raises.

    An entry that cannot be read (corrupt or truncated zip, bad ``meta.json``, missing arrays,
    not a session) gives a row whose ``error`` says why.
    """
    path = Path(path)
    try:
        is_dir = path.is_dir()
        return _read(path, is_dir, _stamp(path, is_dir))
    except OSError as exc:
        return SessionRow(path.name, path, packed=False, error=str(exc))


def _read(path: Path, is_dir: bool, stamp: Stamp) -> SessionRow:
    try:
        return _read_folder(path, stamp) if is_dir else _read_zip(path, stamp)
    except (SessionError, OSError) as exc:
        reason = str(exc) if isinstance(exc, SessionError) else f"{path}: {exc}"
    except Exception as exc:  # a case the parsers do not foresee: still a row, never a crash
        log.exception("unexpected error reading %s", path)
        reason = f"{path}: cannot be read ({type(exc).__name__}: {exc})"
    return SessionRow(
        path.name,
        path,
        packed=not is_dir,
        created=_created(None, path.name),
        size_bytes=0 if is_dir else stamp[1],
        newest_mtime=stamp[0] / 1e9,
        error=reason.removeprefix(f"{path}: "),
    )


def _list_entries(base: Path) -> dict[str, bool] | None:
    """``{name: is_dir}`` of the folders and ``.session.zip`` files in ``base`` (hidden ones,
    such as the temporary files of atomic writes, skipped); ``None`` if ``base`` is missing."""
    try:
        with os.scandir(base) as entries:
            found = {e.name: e.is_dir() for e in entries if not e.name.startswith(".")}
    except (FileNotFoundError, NotADirectoryError):
        return None
    return {name: d for name, d in found.items() if d or name.endswith(ZIP_SUFFIX)}


# -- the index -------------------------------------------------------------------------------------
class SessionIndex:
    """The sessions in ``base_path``, read once each and kept up to date cheaply.

    :meth:`scan` lists the base folder, stats each entry and reads only the entries that are new
    or whose stamp (name, mtime in ns, size) changed; ``full=True`` reads everything again.
    Rows are published as they are read (:attr:`version` moves at most every 50 ms during a
    scan), so a reader of :meth:`rows` sees them appear. :meth:`poll` (for the GUI thread: one
    ``stat`` at most every ``poll_interval`` seconds) and :meth:`request_scan` run scans on a
    background thread.

    Parameters
    ----------
    base_path
        The folder holding session folders and ``.session.zip`` files (need not exist).
    poll_interval
        Seconds between two stats of the base folder by :meth:`poll`.
    folder_interval
        While unpacked folders are listed, :meth:`poll` also rescans every ``folder_interval``
        seconds: a folder being written changes without touching the base folder's mtime.

    Attributes
    ----------
    reads
        Entries read from disk so far (cache misses), for tests and benchmarks.
    """

    def __init__(
        self,
        base_path: str | os.PathLike[str],
        *,
        poll_interval: float = 0.5,
        folder_interval: float = 2.0,
    ):
        self.base_path = Path(base_path)
        self.poll_interval = poll_interval
        self.folder_interval = folder_interval
        self.reads = 0
        self._rows: dict[str, SessionRow] = {}
        self._stamps: dict[str, Stamp] = {}
        self._names: frozenset[str] = frozenset()
        self._exists: bool | None = None
        self._version = 0
        self._dirty, self._published = False, -float("inf")
        self._lock = threading.Lock()  # guards the published state; never held during I/O
        self._scan_lock = threading.Lock()  # one scan at a time
        self._tasks = TaskQueue(f"index-{self.base_path.name}")
        self._queued = self._queued_full = self._closed = False
        self._seen_mtime: object = _UNSEEN
        self._last_poll = self._last_request = -float("inf")

    # -- published state (any thread) ----------------------------------------------------------
    @property
    def version(self) -> int:
        """Increases whenever a row is added, changed or removed."""
        return self._version

    @property
    def exists(self) -> bool | None:
        """Whether the base folder existed at the last scan (``None`` before the first)."""
        return self._exists

    @property
    def names(self) -> frozenset[str]:
        """Entry names of the last listing (rows may still be being read)."""
        return self._names

    def rows(self) -> list[SessionRow]:
        """The rows read so far, newest first (by start time, then name)."""
        with self._lock:
            rows = list(self._rows.values())
        return sorted(rows, key=lambda r: (r.created or datetime.min, r.name), reverse=True)

    # -- scanning (any thread; the background one normally) -----------------------------------
    def scan(self, *, full: bool = False) -> list[SessionRow]:
        """List the base folder and read new or changed entries (every entry if ``full``).

        Returns :meth:`rows`. Never raises for a bad entry: its row carries the error.
        """
        with self._scan_lock:
            listing = _list_entries(self.base_path)
            with self._lock:
                self._exists = listing is not None
                listing = listing or {}
                gone = [name for name in self._rows if name not in listing]
                for name in gone:
                    self._rows.pop(name, None)
                    self._stamps.pop(name, None)
                self._names = frozenset(listing)
                if gone:
                    self._changed()
            for name in sorted(listing, reverse=True):  # newest first for timestamped names
                self._scan_entry(name, listing[name], full)
            with self._lock:
                if self._dirty:
                    self._changed(now=True)
        return self.rows()

    def _changed(self, *, now: bool = False) -> None:
        """Under ``_lock``: note a change; publish it (bump :attr:`version`) at once, or at most
        every ``_PUBLISH_INTERVAL`` s while a scan goes on, so that the GUI takes a new snapshot
        (a sort of every row) a few times a second rather than once per row read."""
        self._dirty = True
        clock = time.monotonic()
        if now or clock - self._published >= _PUBLISH_INTERVAL:
            self._version += 1
            self._dirty, self._published = False, clock

    def _scan_entry(self, name: str, is_dir: bool, full: bool) -> None:
        path = self.base_path / name
        try:
            stamp = _stamp(path, is_dir)
        except FileNotFoundError:
            return self._forget(name)  # vanished since the listing
        except OSError as exc:
            row, stamp = SessionRow(name, path, packed=not is_dir, error=str(exc)), None
        else:
            if not full and self._stamps.get(name) == stamp:
                return None
            self.reads += 1
            row = _read(path, is_dir, stamp)
            if row.error is not None and not os.path.lexists(path):
                return self._forget(name)  # removed while read (packed, deleted)
        with self._lock:
            self._rows[name] = row
            if stamp is not None:
                self._stamps[name] = stamp
            self._changed()
        return None

    def _forget(self, name: str) -> None:
        with self._lock:
            self._stamps.pop(name, None)
            if self._rows.pop(name, None) is not None:
                self._changed()

    # -- background scans ----------------------------------------------------------------------
    def poll(self) -> None:
        """Cheap, for the GUI thread: at most every ``poll_interval`` s, stat the base folder and
        request a scan if its mtime changed (or folders may be changing, see ``folder_interval``).
        """
        now = time.monotonic()
        if now - self._last_poll < self.poll_interval:
            return
        self._last_poll = now
        try:
            mtime: int | None = os.stat(self.base_path).st_mtime_ns
        except OSError:
            mtime = None
        if mtime != self._seen_mtime:
            self._seen_mtime = mtime
            self.request_scan()
        elif now - self._last_request >= self.folder_interval:
            with self._lock:
                folders = any(not row.packed for row in self._rows.values())
            if folders:
                self.request_scan()

    def request_scan(self, *, full: bool = False) -> None:
        """Have the background thread scan soon (requests made meanwhile merge into one)."""
        self._last_request = time.monotonic()
        with self._lock:
            self._queued_full |= full
            if self._queued or self._closed:
                return
            self._queued = True
        self._tasks.submit(self._background_scan)

    def _background_scan(self) -> None:
        with self._lock:
            full, self._queued, self._queued_full = self._queued_full, False, False
        self.scan(full=full)  # an error (a listing refused) is logged by the queue

    @property
    def scanning(self) -> bool:
        """True while a background scan is requested or running."""
        return self._tasks.busy

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no background scan is requested or running; False on timeout."""
        return self._tasks.wait(timeout)

    def close(self) -> None:
        """Stop the background thread (after the scan in progress, if any)."""
        with self._lock:
            self._closed = True
        self._tasks.shutdown(wait=True)
