"""What an interrupted write or pack leaves behind, and how it is cleaned up or trimmed.

- A pack killed while writing its zip leaves ``.<name>.session.zip.<8 chars>.tmp`` beside the
  folder (the temporary name of :func:`labsession.core.atomic.atomic_path`): the folder is intact
  and the next :meth:`Session.attach` or ``pack_to_zip`` of that session removes the file.
- A packed folder is first renamed aside to ``.<name>.removing`` (hidden), then deleted, so a half
  deleted folder never carries the session's name. One left by a kill is deleted by the next
  attach or pack in the same base folder, once a zip of ``<name>`` that reads back whole holds
  every file left in it, byte for byte.
- A recording thrown away (``App.discard_recording``) is renamed to ``.<name>.<8 hex>.discarded``
  (hidden), then deleted. One left by a kill is deleted by the next attach or pack in the same
  base folder, once no live process holds ``<name>``'s lock.
- A write cut short (a kill, a full disk) may leave arrays whose tail is not valid: a missing,
  NaN-filled or unreadable chunk. :func:`recoverable_stamps` finds where the valid samples end.
  It may also leave the temporary files of atomic writes inside the folder:
  ``.<file>.<8 chars>.tmp`` (``meta.json``, ``labels.json``) at its top and
  ``<chunk>.<32 hex>.partial`` (zarr's chunk writes) anywhere below; attach removes them.

Nothing else is ever removed: only regular files and folders with names of exactly these forms,
of this session, of a session whose zip is verified, or of a discarded session nobody holds; a
link, a named pipe or a folder with such a name is left and logged.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import zarr

from labsession.core.archive import verify_zip
from labsession.core.atomic import fsync_dir
from labsession.errors import LabsessionError, SessionError
from labsession.recording._layout import (
    ZIP_SUFFIX,
    folders_of_pack,
    zip_prefix,
    zips_of_folder,
)
from labsession.recording._lock import discard_lock_file, session_lock_holder
from labsession.recording._store import SessionStore

__all__ = [
    "DISCARDED_SUFFIX",
    "REMOVING_SUFFIX",
    "clean_pack_temp_files",
    "clean_removal_leftovers",
    "clean_write_temp_files",
    "recoverable_stamps",
    "remove_folder_aside",
]

log = logging.getLogger(__name__)

REMOVING_SUFFIX = ".removing"
#: Suffix of the hidden name a discarded session folder gets while it is deleted.
DISCARDED_SUFFIX = ".discarded"
#: The random part of a temporary name: ``secrets.token_hex(4)`` (or ``tempfile``'s 8 characters).
_TEMP_RANDOM = r"[A-Za-z0-9_]{8}"
#: Temporary files of atomic writes inside a session folder: ``atomic_path``'s at its top, and
#: zarr ``LocalStore``'s (``<chunk>.<uuid4 hex>.partial``) anywhere below.
_TOP_TEMP = re.compile(rf"\..+\.{_TEMP_RANDOM}\.tmp")
_CHUNK_TEMP = re.compile(r".+\.[0-9a-f]{32}\.partial")
#: A discarded session folder being deleted: ``.<name>.<8 hex>.discarded``.
_DISCARDED = re.compile(rf"\.(.+)\.[0-9a-f]{{8}}{re.escape(DISCARDED_SUFFIX)}")
#: Timestamp chunks read at once by :func:`recoverable_stamps`.
_SCAN_CHUNKS = 64


#: A temporary file of :func:`~labsession.core.atomic.atomic_path`; group 1 is its target's name.
_ATOMIC_TEMP = re.compile(rf"\.(.+)\.{_TEMP_RANDOM}\.tmp")


def clean_pack_temp_files(folder: Path, zip_path: Path | None = None) -> list[Path]:
    """Remove the temporary zips interrupted packs of session ``folder`` left beside it.

    ``.<zip name>.<8 chars>.tmp`` files are removed for every name a pack of ``folder`` takes:
    ``<folder name>.session.zip``, ``zip_path``, and ``<folder name>_<slug>.session.zip`` for
    any slug (the session may have been named, renamed or unnamed since a pack under another
    name was killed: its temporary zip, as large as the session, would be left forever). One
    is kept, whatever its name, when another folder beside ``folder`` would pack under that
    name too (``<folder name>_<x>``, or ``Y`` for a folder ``Y_<slug>``): that folder's pack
    may be running. The caller holds the session's lock, so no pack of this session is
    running. Returns the paths removed.
    """
    names = {folder.name + ZIP_SUFFIX} | ({zip_path.name} if zip_path is not None else set())
    removed = []
    try:
        entries = list(os.scandir(folder.parent))
    except OSError:
        return removed
    for entry in entries:
        match = _ATOMIC_TEMP.fullmatch(entry.name)
        if match is None:
            continue
        zip_name = match.group(1)
        owners = folders_of_pack(zip_name)
        if zip_name not in names and folder.name not in owners:
            continue
        # Even under this session's own zip name: folder X named "a" and a folder X_a both
        # pack to X_a.session.zip, and X_a's pack may be writing this file now.
        others = [o for o in owners if o != folder.name and (folder.parent / o).is_dir()]
        if others:  # as much another session's: leave it to that one
            log.info("%s: kept, it may be a pack of %s in progress", entry.path, others[0])
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        log.info("removed %s, left by an interrupted pack of %s", entry.path, folder)
        removed.append(Path(entry.path))
    return removed


def _remove_temp(path: str, *, why: str) -> Path | None:
    """Unlink ``path`` if it is a regular file (never a link, pipe or folder); log either way."""
    try:
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            log.warning("%s: named like a temporary file but not a regular file; left", path)
            return None
        os.unlink(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s: could not remove this temporary file (%s)", path, exc.strerror)
        return None
    log.info("removed %s, left by %s", path, why)
    return Path(path)


def clean_write_temp_files(folder: Path) -> list[Path]:
    """Remove the temporary files that interrupted atomic writes left inside session ``folder``.

    Only regular files named ``.<name>.<8 chars>.tmp`` at the folder's top or
    ``<name>.<32 hex>.partial`` below it; links are not followed. The caller holds the
    session's lock, so no write is in progress. Never raises; returns the paths removed.
    """
    removed = []
    for top, dirs, files in os.walk(folder, onerror=lambda exc: log.warning("%s", exc)):
        for name in [*files, *dirs]:
            if (top == str(folder) and _TOP_TEMP.fullmatch(name)) or _CHUNK_TEMP.fullmatch(name):
                path = os.path.join(top, name)
                if (gone := _remove_temp(path, why="an interrupted write")) is not None:
                    removed.append(gone)
    return removed


def remove_folder_aside(folder: Path) -> None:
    """Delete a packed session ``folder``: rename it to ``.<name>.removing``, then delete that.

    A kill at any moment leaves either the whole folder under its name or a hidden leftover
    that :func:`clean_removal_leftovers` finishes. A failure to rename or delete is logged, not
    raised: the session is safe in its zip by then.
    """
    aside = folder.with_name(f".{folder.name}{REMOVING_SUFFIX}")
    if aside.exists():  # a leftover whose zip could not be verified: keep it, never merge
        aside = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}{REMOVING_SUFFIX}")
    try:
        os.rename(folder, aside)
        fsync_dir(folder.parent)
    except OSError as exc:
        log.warning("%s: packed, but the folder could not be removed (%s)", folder, exc.strerror)
        return
    try:
        shutil.rmtree(aside)
    except OSError as exc:
        log.warning(
            "%s: packed, but its folder (renamed %s) could not be deleted (%s); the next attach "
            "or pack in %s deletes it",
            folder,
            aside.name,
            exc.strerror,
            folder.parent,
        )


def _session_of_leftover(base: Path, name: str) -> str | None:
    """The session a ``.<name>[.<8 hex>].removing`` leftover in ``base`` belongs to, or None.

    The one whose ``.session.zip`` exists, if either reading has one.
    """
    if not (name.startswith(".") and name.endswith(REMOVING_SUFFIX)):
        return None
    inner = name[1 : -len(REMOVING_SUFFIX)]
    candidates = [inner, re.sub(r"\.[0-9a-f]{8}$", "", inner)]
    candidates = [c for c in candidates if c]
    for candidate in candidates:
        if (base / (candidate + ZIP_SUFFIX)).is_file():
            return candidate
    return candidates[-1] if candidates else None


def _zip_is_whole(zip_path: Path) -> bool:
    try:
        verify_zip(zip_path)
        with SessionStore(zip_path) as store:
            for name in store.stream_names:
                store.n_samples(name)
    except (LabsessionError, OSError) as exc:
        log.warning("%s: does not read back whole (%s)", zip_path, exc)
        return False
    return True


def _held_in_zip(leftover: str, zip_path: Path) -> bool:
    """Whether every file left in ``leftover`` (a packed folder being deleted) is in session zip
    ``zip_path`` at the same place, byte for byte: nothing is lost with it (trivially so once
    its deletion removed every file, ``meta.json`` too). False for a link, a special file, or
    a file or zip that cannot be read."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = set(zf.namelist())
            prefix = zip_prefix(zip_path, names)
            for top, dirs, files in os.walk(leftover):
                for name in dirs + files:
                    path = os.path.join(top, name)
                    mode = os.lstat(path).st_mode
                    if stat.S_ISDIR(mode):
                        continue
                    member = prefix + os.path.relpath(path, leftover).replace(os.sep, "/")
                    if not stat.S_ISREG(mode) or member not in names:
                        return False
                    with open(path, "rb") as mine, zf.open(member) as theirs:
                        while block := mine.read(1 << 20):
                            if theirs.read(len(block)) != block:
                                return False
                        if theirs.read(1):
                            return False
    except (OSError, ValueError, zipfile.BadZipFile, LabsessionError):
        return False
    return True


def clean_removal_leftovers(base: Path) -> list[Path]:
    """Finish the removals of packed folders interrupted in ``base``; return what was deleted.

    A ``.<name>.removing`` folder is deleted only when no live process holds ``<name>``'s lock
    and a zip beside it named as a pack of ``<name>`` (``<name>.session.zip`` or
    ``<name>_<slug>.session.zip``) holds every file still in the leftover at the same place,
    byte for byte (trivially so once its deletion removed them all), and reads back whole
    (every member's CRC, the session's meta and arrays); the stale lock file of ``<name>``
    goes with it. Any other leftover is kept, with a warning: one that differs from the zip
    there by one byte may be the only copy of what it holds.

    A ``.<name>.<8 hex>.discarded`` folder (a discarded session whose deletion a kill cut
    short) is deleted when no live process holds ``<name>``'s lock, with the stale lock file.
    Only folders named exactly so are deleted; links are never followed.
    """
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(base) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return removed
    removed += _clean_discarded(base, entries)
    for entry in entries:
        name = _session_of_leftover(base, entry.name)
        if name is None:
            continue
        folder = base / name
        try:
            if session_lock_holder(folder) is not None:
                continue  # its packer is still deleting it
        except SessionError as exc:  # its lock path is not a lock file: keep what it guards
            log.warning("%s: left by an interrupted removal, kept: %s", entry.path, exc)
            continue
        # Never by a zip's name alone: the zip there may have been replaced since, or be
        # another session's (a folder named <name>.<8 hex>, or <name>_<slug>).
        zips = zips_of_folder(base, name)
        zip_path = next((z for z in zips if _held_in_zip(entry.path, z)), None)
        if zip_path is None or not _zip_is_whole(zip_path):
            log.warning(
                "%s: left by an interrupted removal, kept: %s",
                entry.path,
                f"{zip_path.name} does not read back whole"
                if zip_path is not None
                else f"no zip of {name} beside it holds every file left in it, byte for byte",
            )
            continue
        if _delete_leftover(entry, folder, "an interrupted removal (its zip is whole)"):
            removed.append(Path(entry.path))
    return removed


def _clean_discarded(base: Path, entries: list[os.DirEntry[str]]) -> list[Path]:
    """Delete the ``.<name>.<8 hex>.discarded`` folders among ``entries`` nobody is deleting."""
    removed = []
    for entry in entries:
        match = _DISCARDED.fullmatch(entry.name)
        if match is None:
            continue
        folder = base / match.group(1)
        try:
            if session_lock_holder(folder) is not None:
                continue  # its discard is still deleting it
        except SessionError as exc:  # its lock path is not a lock file: leave it
            log.warning("%s: left by an interrupted discard, kept: %s", entry.path, exc)
            continue
        if _delete_leftover(entry, folder, "an interrupted discard"):
            removed.append(Path(entry.path))
    return removed


def _delete_leftover(entry: os.DirEntry[str], folder: Path, left_by: str) -> bool:
    """Delete the leftover folder ``entry`` of session ``folder`` (and ``folder``'s stale lock
    file once neither exists); whether it is gone."""
    shutil.rmtree(entry.path, ignore_errors=True)
    if os.path.lexists(entry.path):
        log.warning("%s: left by %s, could not be deleted", entry.path, left_by)
        return False
    log.info("deleted %s, left by %s", entry.path, left_by)
    if not os.path.lexists(folder):
        discard_lock_file(folder)
    return True


def _readable(array: zarr.Array, lo: int, hi: int) -> np.ndarray | None:
    try:
        return array[lo:hi]
    except Exception:  # noqa: BLE001 - an unreadable chunk (truncated by a kill) ends the data
        return None


def recoverable_stamps(data: zarr.Array, ts: zarr.Array) -> np.ndarray:
    """The timestamps (float64, s) of the leading samples that are whole: readable, in both
    arrays, with finite times; their count is the length to keep.

    Scans every timestamp (8 bytes a sample, read ``_SCAN_CHUNKS`` chunks at a time) and stops
    at the first non-finite one or the first chunk that cannot be read; then steps back over
    sample chunks at the end that cannot be read. Cheaper than packing, which reads all; the
    stamps are returned so that the caller need not read them again.
    """
    n = min(data.shape[0], ts.shape[0])
    chunk = ts.chunks[0]
    blocks: list[np.ndarray] = []
    lo = 0
    while lo < n:
        hi = min(n, lo + _SCAN_CHUNKS * chunk)
        block = _readable(ts, lo, hi)
        if block is None:  # find the unreadable chunk inside the block
            for start in range(lo, hi, chunk):
                part = _readable(ts, start, min(hi, start + chunk))
                if part is None:
                    n = start
                    break
                bad = np.flatnonzero(~np.isfinite(part))
                if bad.size:
                    n = start + int(bad[0])
                    break
                blocks.append(part)
            break
        bad = np.flatnonzero(~np.isfinite(block))
        blocks.append(block)
        if bad.size:
            n = lo + int(bad[0])
            break
        lo = hi
    data_chunk = data.chunks[0]
    while n > 0:
        start = (n - 1) // data_chunk * data_chunk
        if _readable(data, start, n) is not None:
            break
        n = start
    stamps = np.concatenate(blocks) if blocks else np.empty(0)
    return stamps[:n].astype(np.float64, copy=False)
