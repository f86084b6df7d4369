"""The session index's rows, kept between runs: a new process lists a folder without reading it.

Reading 500 sessions' small files costs ~200 ms of CPU; a stat per entry costs a tenth of that.
:class:`RowCache` keeps, per base folder, a JSON file in the user's state folder
(:func:`labsession.core.paths.user_state_dir`, never the working folder) with each entry's stamp
and row. :class:`~labsession.widgets._session_index.SessionIndex` loads it at its first scan and
takes a cached row instead of reading the entry when the entry's stamp is the cached one; it
writes the file back on its scan thread after scans that read something, at most every
:data:`WRITE_INTERVAL` seconds, and when it closes.

The file is only ever a hint: one that is too big, not JSON, of another version or another base
folder, or with a single malformed row is ignored as a whole (and rewritten). Rows with an error
are not kept (a new run tries again: a permission given back changes no stamp), nor rows read
less than :data:`RACY_NS` after their entry's last write: a rewrite of the same size within the
file system's timestamp granularity would leave the stamp unchanged (as with Git's "racy"
index entries). Such a row is read again by the next run, which can then keep it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
import time
from pathlib import Path
from typing import Any

from labsession.core.atomic import atomic_write_json
from labsession.core.paths import user_state_dir
from labsession.widgets._session_files import Stamp
from labsession.widgets._session_rows import SessionRow

__all__ = ["CACHE_VERSION", "MAX_CACHE_BYTES", "RACY_NS", "WRITE_INTERVAL", "RowCache"]

log = logging.getLogger(__name__)

#: Version of the file's layout; a file of another version is ignored.
CACHE_VERSION = 1
#: A bigger cache file is ignored unread (500 sessions take ~200 KiB).
MAX_CACHE_BYTES = 64 * 1024 * 1024
#: A row read less than this (ns) after its entry's newest write is not kept: 2 s covers the
#: coarsest timestamps (FAT).
RACY_NS = 2_000_000_000
#: Seconds between two writes of the file during scans (closing the index writes at once).
WRITE_INTERVAL = 5.0

#: What a cache holds: ``{name: (stamp, row)}``.
Cached = dict[str, tuple[Stamp, SessionRow]]

_CAUGHT = (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError, RuntimeError)


def keepable(row: SessionRow, stamp: Stamp, read_ns: int | None) -> bool:
    """Whether ``row`` (with ``stamp``, read at ``read_ns``, ``None`` for a row that came from
    the cache) may be written to the cache: no error, finite numbers, not read too soon after
    its entry's last write (see :data:`RACY_NS`)."""
    if row.error is not None or (read_ns is not None and read_ns - stamp[0] < RACY_NS):
        return False
    numbers = [row.newest_mtime, *(s.fs for s in row.streams)]
    numbers += [] if row.duration_s is None else [row.duration_s]
    return all(math.isfinite(n) for n in numbers)


class RowCache:
    """The cache file of the base folder ``base`` (see the module's docstring).

    The file is ``user_state_dir() / "session-index" / "<16 hex digits>.json"``, named by the
    SHA-1 of the base folder's absolute path, which the file also records.
    """

    def __init__(self, base: str | os.PathLike[str]):
        self.base = os.path.abspath(base)
        #: Something changed since the file was written (set by the index).
        self.dirty = False
        self._written = -math.inf
        self._warned = False

    @property
    def path(self) -> Path:
        """The cache file (its folder is created only when the file is written)."""
        key = hashlib.sha1(os.fsencode(self.base), usedforsecurity=False).hexdigest()[:16]
        return user_state_dir(create=False) / "session-index" / f"{key}.json"

    def load(self) -> Cached:
        """The cached rows; empty (the file to be rewritten) if it is missing or unusable."""
        path: Path | str = "(no state folder)"
        try:
            path = self.path
            raw = _read_bounded(path)
            return {} if raw is None else self._parse(json.loads(raw))
        except _CAUGHT as exc:
            log.debug("session list cache %s ignored: %s", path, exc)
            self.dirty = True
            return {}

    def _parse(self, data: Any) -> Cached:
        if type(data) is not dict or data.get("version") != CACHE_VERSION:
            raise ValueError(f"not a version {CACHE_VERSION} cache")
        if data.get("base") != self.base:
            raise ValueError(f"the cache of {data.get('base')!r}, not of {self.base!r}")
        cached: Cached = {}
        for name, item in data["entries"].items():
            mtime_ns, size = item["stamp"]
            if type(mtime_ns) is not int or type(size) is not int:
                raise TypeError(f"{name}: bad stamp {item['stamp']!r}")
            row = SessionRow.from_dict(item["row"])
            if row.name != name:
                raise ValueError(f"{name}: the row of {row.name!r}")
            cached[name] = ((mtime_ns, size), row)
        return cached

    def save(self, rows: Cached, *, now: bool = False) -> None:
        """Write ``rows`` (all the cache is to hold) if :attr:`dirty`, and if :data:`WRITE_INTERVAL`
        seconds went by since the last write (unless ``now``). Never raises: a failure is logged
        (a warning the first time)."""
        clock = time.monotonic()
        if not self.dirty or (not now and clock - self._written < WRITE_INTERVAL):
            return
        self.dirty, self._written = False, clock
        data = {
            "version": CACHE_VERSION,
            "base": self.base,
            "entries": {
                name: {"stamp": list(stamp), "row": row.to_dict()}
                for name, (stamp, row) in rows.items()
            },
        }
        path: Path | str = "(no state folder)"
        try:
            path = self.path
            path.parent.mkdir(parents=True, exist_ok=True)
            # no fsync: a cache lost or torn by a power cut is ignored and rebuilt
            atomic_write_json(path, data, indent=None, fsync=False)
        except _CAUGHT as exc:
            level = logging.DEBUG if self._warned else logging.WARNING
            log.log(level, "cannot write the session list cache %s: %s", path, exc)
            self._warned = True


def _read_bounded(path: Path) -> bytes | None:
    """The bytes of ``path`` (``None`` if absent); ``ValueError`` if it is not a regular file
    or holds more than :data:`MAX_CACHE_BYTES`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_CACHE_BYTES:
            raise ValueError(f"not a regular file of at most {MAX_CACHE_BYTES} bytes")
        raw = file.read(MAX_CACHE_BYTES + 1)
    if len(raw) > MAX_CACHE_BYTES:  # grew since the fstat
        raise ValueError(f"more than {MAX_CACHE_BYTES} bytes")
    return raw
