"""The sessions under a folder, read cheaply and cached: what the session manager lists.

:func:`read_row` (in :mod:`labsession.widgets._session_files`) describes one session folder or
``.session.zip`` from its small files only (``meta.json``, ``labels.json`` and each stream's
array ``zarr.json``) and never opens Zarr: :func:`labsession.recording.session_summary` opens every
array with Zarr and reads the timestamps, 6-13 ms per small session against ~0.45 ms here
(``benchmarks/session_list.py``): seconds for a folder of hundreds. Reading an entry is bounded and
never blocks (FIFOs, link loops, huge or sparse files and zip bombs give error rows).

:class:`SessionIndex` keeps one :class:`SessionRow` per entry, keyed by the entry's name and its
stamp (modification time in ns and size; for a folder, those of its small files), so an
unchanged session is never read twice. The rows are also kept between runs in the user's state
folder (:mod:`labsession.widgets._session_cache`): the first listing of a new process reads only
the sessions that changed since. Scans run on a daemon thread of the index's own (a scan stuck on
a hung file system never keeps the interpreter alive); the GUI thread only calls
:meth:`SessionIndex.poll`, which stats the base folder at most every ``poll_interval`` seconds.
No imgui here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from labsession.errors import SessionError
from labsession.recording import session_lock_holder
from labsession.widgets._session_cache import Cached, RowCache, keepable
from labsession.widgets._session_files import (
    Entry,
    Stamp,
    entry_stamp,
    list_entries,
    read_entry,
    read_row,
)
from labsession.widgets._session_rows import SessionRow, StreamSummary

__all__ = [
    "RECENT_SECONDS",
    "AppFolders",
    "SessionIndex",
    "SessionRow",
    "StreamSummary",
    "read_row",
]

log = logging.getLogger(__name__)

_UNSEEN = object()
_PUBLISH_INTERVAL = 0.05  # s between two version bumps during a scan

#: An unpacked folder written to less than this many seconds ago may be another recorder's.
RECENT_SECONDS = 5.0


# -- the index -------------------------------------------------------------------------------------
class SessionIndex:
    """The sessions in ``base_path``, read once each and kept up to date cheaply.

    :meth:`scan` lists the base folder, stats each entry and reads only the entries that are new
    or whose stamp (name, mtime in ns, size) changed; ``full=True`` reads everything again.
    Rows are published as they are read (:attr:`version` moves at most every 50 ms during a
    scan), so a reader of :meth:`rows` sees them appear. :meth:`poll` (for the GUI thread: one
    ``stat`` at most every ``poll_interval`` seconds) and :meth:`request_scan` run scans on a
    background daemon thread, started on the first request and stopped by :meth:`close`.

    Symbolic links to folders are listed as error rows and never followed (a link to a data
    share would be walked); a base folder that cannot be listed sets :attr:`listing_error`.

    Parameters
    ----------
    base_path
        The folder holding session folders and ``.session.zip`` files (need not exist).
    poll_interval
        Seconds between two stats of the base folder by :meth:`poll`.
    folder_interval
        While unpacked folders are listed (or the base folder cannot be listed), :meth:`poll`
        also rescans every ``folder_interval`` seconds: a folder being written changes without
        touching the base folder's mtime (and a permission given back changes only its ctime).
    packed_interval
        Otherwise :meth:`poll` rescans every ``packed_interval`` seconds: a zip replaced in
        place (``cp new.zip old.session.zip`` keeps the file, so the base folder's mtime) is
        re-read by its changed size and time (a scan stats each entry, and reads only those).
    cache
        Keep the rows between runs (:class:`~labsession.widgets._session_cache.RowCache`): the
        first scan takes the cached row of each entry whose stamp is unchanged, and the file is
        written on the scan thread after scans that read something (at most every 5 s) and by
        :meth:`close`.

    Attributes
    ----------
    reads
        Entries read from disk so far (cache misses), for tests and benchmarks.
    cache_hits
        Entries whose row came from the cache file rather than from disk.
    """

    def __init__(
        self,
        base_path: str | os.PathLike[str],
        *,
        poll_interval: float = 0.5,
        folder_interval: float = 2.0,
        packed_interval: float = 10.0,
        cache: bool = True,
    ):
        self.base_path = Path(base_path)
        self.poll_interval = poll_interval
        self.folder_interval = folder_interval
        self.packed_interval = packed_interval
        self.reads = self.cache_hits = 0
        self._rows: dict[str, SessionRow] = {}
        self._stamps: dict[str, Stamp] = {}
        self._read_ns: dict[str, int] = {}  # when each row read from disk was read (wall clock)
        self._cache = RowCache(self.base_path) if cache else None
        self._cached: Cached | None = None  # the cache file's rows until a first scan ends
        self._listed = False  # a scan went through every entry: the rows are worth saving
        self._names: frozenset[str] = frozenset()
        self._exists: bool | None = None
        self._listing_error: str | None = None
        self._version = 0
        self._dirty, self._published = False, -float("inf")
        self._lock = threading.Lock()  # guards the published state; never held during I/O
        self._wake = threading.Condition(self._lock)  # requests in, idle out
        self._scan_lock = threading.Lock()  # one scan at a time
        self._thread: threading.Thread | None = None
        self._queued = self._queued_full = self._running = self._closed = False
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
    def listing_error(self) -> str | None:
        """Why the base folder could not be listed at the last scan (permission denied...);
        ``None`` when it could (or was missing: see :attr:`exists`)."""
        return self._listing_error

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

        Returns :meth:`rows`. Never raises for a bad entry: its row carries the error. A base
        folder that cannot be listed keeps the rows of the last listing and sets
        :attr:`listing_error`.
        """
        with self._scan_lock:
            if self._cached is None:
                self._cached = {} if self._cache is None else self._cache.load()
            try:
                listing = list_entries(self.base_path)
            except OSError as exc:
                with self._lock:
                    self._exists, self._listing_error = (
                        True,
                        f"cannot list {self.base_path}: {exc.strerror or exc}",
                    )
                    self._changed(now=True)
                return self.rows()
            with self._lock:
                self._exists, self._listing_error = listing is not None, None
                listing = listing or {}
                gone = [name for name in self._rows if name not in listing]
                for name in gone:
                    self._rows.pop(name, None)
                    self._stamps.pop(name, None)
                    self._read_ns.pop(name, None)
                self._names = frozenset(listing)
                if gone:
                    self._changed()
                    self._note_cache_change()
            for name in sorted(listing, reverse=True):  # newest first for timestamped names
                if self._closed and threading.current_thread() is self._thread:
                    break  # closing: a background scan does not make close() wait long
                self._scan_entry(name, listing[name], full)
            else:
                self._listed = True
                if self._cached:  # cached entries gone since: drop them from the file
                    self._note_cache_change()
                self._cached = {}
            with self._lock:
                if self._dirty:
                    self._changed(now=True)
            self._save_cache()
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

    def _scan_entry(self, name: str, entry: Entry, full: bool) -> None:
        path = self.base_path / name
        try:
            stamp = entry_stamp(path, entry)
        except FileNotFoundError:
            return self._forget(name)  # vanished since the listing
        except OSError as exc:
            reason = f"cannot be examined ({exc.strerror or exc})"
            row, stamp = SessionRow(name, path, packed=not entry.is_dir, error=reason), None
        else:
            if not full and self._stamps.get(name) == stamp:
                return None
            read_ns: int | None = None
            row = None if full else self._from_cache(name, path, entry, stamp)
            if row is None:
                self.reads += 1
                read_ns = time.time_ns()  # before the read (see _session_cache.RACY_NS)
                row = read_entry(path, entry, stamp)
                if row.error is not None and not os.path.lexists(path):
                    return self._forget(name)  # removed while read (packed, deleted)
                if keepable(row, stamp, read_ns):  # (a folder being recorded is not: no write)
                    self._note_cache_change()
        with self._lock:
            self._rows[name] = row
            self._read_ns.pop(name, None)
            if stamp is None:  # an error row: compare no stamp with the next one
                self._stamps.pop(name, None)
            else:
                self._stamps[name] = stamp
                if read_ns is not None:
                    self._read_ns[name] = read_ns
            self._changed()
        return None

    def _forget(self, name: str) -> None:
        with self._lock:
            self._stamps.pop(name, None)
            self._read_ns.pop(name, None)
            if self._rows.pop(name, None) is not None:
                self._changed()
                self._note_cache_change()

    # -- the cache file (scan thread) ----------------------------------------------------------
    def _from_cache(self, name: str, path: Path, entry: Entry, stamp: Stamp) -> SessionRow | None:
        """The cached row of ``name`` if cached with this ``stamp``, as this kind of entry."""
        stamped, row = (self._cached or {}).pop(name, (None, None))
        if row is None or stamped != stamp or entry.error is not None or row.packed == entry.is_dir:
            return None
        self.cache_hits += 1
        return row if row.path == path else replace(row, path=path)

    def _note_cache_change(self) -> None:
        if self._cache is not None:
            self._cache.dirty = True

    def _save_cache(self, *, now: bool = False) -> None:
        """Under ``_scan_lock``: write the cache file if rows changed (throttled unless ``now``),
        once a scan has listed every entry. Never raises."""
        if self._cache is None or not self._cache.dirty or not self._listed:
            return
        with self._lock:
            rows = {
                name: (stamp, row)
                for name, row in self._rows.items()
                if (stamp := self._stamps.get(name)) is not None
                and keepable(row, stamp, self._read_ns.get(name))
            }
        self._cache.save(rows, now=now)

    # -- background scans ----------------------------------------------------------------------
    def poll(self) -> None:
        """Cheap, for the GUI thread: at most every ``poll_interval`` s, stat the base folder and
        request a scan if its mtime changed (or folders may be changing, or the folder could not
        be listed: every ``folder_interval`` s; else every ``packed_interval`` s).
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
            with self._lock:  # folders change inside; a denied listing may be allowed again
                again = self._listing_error is not None
                again = again or any(not row.packed for row in self._rows.values())
            if again or now - self._last_request >= self.packed_interval:
                self.request_scan()

    def request_scan(self, *, full: bool = False) -> None:
        """Have the background thread scan soon (requests made meanwhile merge into one; none
        after :meth:`close`)."""
        self._last_request = time.monotonic()
        with self._wake:
            if self._closed:
                return
            self._queued_full |= full
            self._queued = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._worker, name=f"labsession-index-{self.base_path.name}", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()

    def _worker(self) -> None:
        """The background thread: one scan per batch of requests, until :meth:`close`."""
        while True:
            with self._wake:
                while not self._queued and not self._closed:
                    self._wake.wait()
                if self._closed:
                    self._queued = False
                    self._wake.notify_all()
                    break
                full, self._queued, self._queued_full = self._queued_full, False, False
                self._running = True
            try:
                self.scan(full=full)
            except Exception:  # never let one bad scan end the thread
                log.exception("scanning %s failed", self.base_path)
            finally:
                with self._wake:
                    self._running = False
                    self._wake.notify_all()
        with self._scan_lock:  # closing: the last rows read go to the cache file
            self._save_cache(now=True)

    @property
    def scanning(self) -> bool:
        """True while a background scan is requested or running."""
        with self._lock:
            return self._queued or self._running

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no background scan is requested or running; False on timeout."""
        with self._wake:
            return self._wake.wait_for(lambda: not (self._queued or self._running), timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop the background thread: a scan in progress stops after the entry it reads.

        Waits at most ``timeout`` seconds (``None``: as long as it takes) and returns whether
        the thread ended; one stuck on a hung file system is a daemon thread, left behind without
        keeping the interpreter alive. Safe to call twice; the index is not used again after
        (no more scans are run: make a new one). Rows read since the cache file was last written
        are written to it (by the background thread as it ends, if there is one).
        """
        with self._wake:
            self._closed = True
            thread = self._thread
            self._wake.notify_all()
        if thread is threading.current_thread():
            return True
        if thread is None:
            if self._scan_lock.acquire(timeout=-1 if timeout is None else timeout):
                try:
                    self._save_cache(now=True)
                finally:
                    self._scan_lock.release()
            return True
        thread.join(timeout)
        return not thread.is_alive()


# -- folders in use --------------------------------------------------------------------------------
class AppFolders:
    """Which folders of ``base_path`` the app holds, from its context (``ctx``, an
    :class:`~labsession.acquisition.AppContext` or ``None``): the session it records
    (``ctx.session``) and those its background thread packs (``ctx.packing``)."""

    def __init__(self, base_path: str | os.PathLike[str]):
        self._base = Path(base_path).absolute()
        self._absolute: dict[Path, Path] = {}  # absolute() asks for the working folder: once
        self._attempts: dict[str, Stamp] = {}  # stamps of folders as our failed attempts left

    def _is(self, name: str, path: Path) -> bool:
        if path.name != name:
            return False
        absolute = self._absolute.get(path)
        if absolute is None:
            absolute = self._absolute[path] = path.absolute()
        return absolute == self._base / name

    def recording(self, ctx: Any, name: str) -> bool:
        """Whether the folder ``name`` is the session the app records."""
        session = getattr(ctx, "session", None)
        return session is not None and self._is(name, Path(session.path))

    def packing(self, ctx: Any, name: str) -> bool:
        """Whether the app is packing the folder ``name`` (on its own thread)."""
        packing = getattr(ctx, "packing", None)
        # a copy: the app's pack thread adds and removes folders while we look
        return bool(packing) and any(self._is(name, Path(p)) for p in frozenset(packing))

    def note_attempt(self, path: Path) -> None:
        """Remember the stamp of ``path`` as a failed attempt to finish it left it: what that
        attempt wrote is no sign of another recorder for :meth:`check_idle`."""
        try:
            self._attempts[path.name] = entry_stamp(path, Entry(is_dir=True))
        except OSError:
            self._attempts.pop(path.name, None)

    def check_idle(self, ctx: Any, path: Path) -> None:
        """Raise :class:`SessionError` unless the folder ``path`` may be finished now: not the
        app's session, not being packed, not locked by a live labsession process
        (:func:`~labsession.recording.session_lock_holder`), and not written to in the last
        :data:`RECENT_SECONDS` (another tool's recorder holds no lock; our own failed attempt
        excepted, see :meth:`note_attempt`)."""
        if self.recording(ctx, path.name):
            raise SessionError(f"{path}: refused: it is the session the app is recording")
        if self.packing(ctx, path.name):
            raise SessionError(f"{path}: refused: the app is packing this session itself")
        holder = session_lock_holder(path)
        if holder is not None:
            raise SessionError(f"{path}: refused: {holder} is recording or packing it")
        stamp = entry_stamp(path, Entry(is_dir=True))
        age = time.time() - stamp[0] / 1e9
        if age < RECENT_SECONDS and stamp != self._attempts.get(path.name):
            raise SessionError(
                f"{path}: refused: written to {max(age, 0.0):.1f} s ago, perhaps by another "
                f"recorder; try again once it has been idle for {RECENT_SECONDS:g} s"
            )
