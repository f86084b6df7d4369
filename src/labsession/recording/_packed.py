"""Packing a session folder into its zip: written aside, verified whole, then put in place.

:func:`pack_folder` writes the zip under a temporary name beside its destination, reads every
member back (CRC-32, and the member list against the folder), checks it as the recorded session
(:func:`verify_packed`), and only then renames it into place. On any failure the temporary file
is removed and a zip already in place is left exactly as it was.

:func:`pack_held_by` tells whether a zip is an earlier pack of a recording that another copy of
it (its folder, or its new zip) holds in full: only such a zip is replaced by a pack, or removed
beside the new one. :func:`zip_holds_meta_of` tells whether a zip was packed from a given folder
(used to finish the removal of a packed folder that a kill interrupted).
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from labsession.core.archive import folder_manifest, verify_zip
from labsession.core.atomic import atomic_path
from labsession.errors import ArchiveError
from labsession.recording._layout import (
    LABELS_FILE,
    META_FILE,
    data_array_name,
    read_small_file,
    read_small_member,
    timestamps_array_name,
    zip_prefix,
    zips_of_folder,
)
from labsession.recording._records import LabelEvent, StreamInfo
from labsession.recording._schema import META_MAX_BYTES, load_json
from labsession.recording._store import SessionStore

log = logging.getLogger(__name__)

__all__ = [
    "is_regular_file",
    "pack_folder",
    "pack_held_by",
    "remove_earlier_packs",
    "verify_packed",
    "zip_holds_meta_of",
]


def verify_packed(
    zip_path: Path,
    infos: Mapping[str, StreamInfo],
    n_samples: Mapping[str, int],
    labels: Sequence[LabelEvent],
) -> None:
    """Check that the session in ``zip_path`` is the one recorded.

    Parameters
    ----------
    zip_path
        The ``.session.zip``.
    infos
        The streams, in order, with their channel count, rate and dtype.
    n_samples
        Samples of each stream (data rows and timestamps alike).
    labels
        The label track.

    Raises
    ------
    ArchiveError
        Naming the zip and the first difference (labels, stream names, a stream's info or
        shape), or a sample chunk missing from an array whose writer wrote every chunk.
    SessionError
        If the zip does not open as a session, or a stream holds fewer rows than its arrays
        record they were closed with (``labsession.closed_rows``).
    """
    with SessionStore(zip_path) as packed:
        if packed.label_track != list(labels):
            raise ArchiveError(f"{zip_path}: labels differ from the recorded ones")
        if packed.stream_names != list(infos):
            raise ArchiveError(f"{zip_path}: streams {packed.stream_names} != {list(infos)}")
        for name, info in infos.items():
            got = packed.stream_info(name)
            if (got.n_channels, got.fs, got.dtype) != (info.n_channels, info.fs, info.dtype):
                raise ArchiveError(
                    f"{zip_path}: stream {name!r} is {got.n_channels} channels at {got.fs:g} Hz "
                    f"({got.dtype}) in the archive, recorded as {info.n_channels} channels at "
                    f"{info.fs:g} Hz ({info.dtype})"
                )
            chunks = packed._array_chunks(name, timestamps=False)
            lost = chunks.missing_chunks(0, n_samples[name]) if chunks.every_chunk_written else []
            if lost:  # every reader would refuse the zip: the folder stays, for another copy
                raise ArchiveError(
                    f"{zip_path}: stream {name!r}: sample chunk {chunks.key(lost[0])} is missing "
                    f"from the folder ({len(lost)} in all), though its writer wrote every chunk: "
                    f"the folder is damaged (an interrupted copy?); not packed"
                )
            data, ts = packed.stores[name], packed.ts_stores[name]
            shape = (n_samples[name], info.n_channels)
            if (packed.n_samples(name), data.shape[1]) != shape or ts.shape[0] != shape[0]:
                raise ArchiveError(
                    f"{zip_path}: stream {name!r} has shape {data.shape} in the archive, "
                    f"expected {shape}"
                )


def pack_folder(folder: Path, zip_path: Path, check: Callable[[Path], None]) -> None:
    """Pack every file of ``folder`` into ``zip_path``, verified before it takes that name.

    Members sit at the archive root, sorted, ``ZIP_STORED`` (the chunks are compressed
    already), as MyoGestic writes them. The archive is written to ``.<zip name>.<8
    characters>.tmp`` beside ``zip_path``, read back (every member's CRC, the member list and
    sizes against the folder), passed to ``check`` (e.g. :func:`verify_packed`, and whether a
    zip at ``zip_path`` may be replaced: :func:`pack_held_by`), and only then renamed onto
    ``zip_path`` (atomically replacing a file there: a link is replaced, never followed). Its
    mode follows the umask.

    Parameters
    ----------
    folder
        The session folder (regular files and folders only).
    zip_path
        The destination.
    check
        Called with the temporary zip's path; what it raises stops the pack.

    Raises
    ------
    ArchiveError
        If ``folder`` holds a link or a special file, or the zip does not read back as written.
    OSError
        If writing or renaming fails (a full disk; a folder at ``zip_path``).

    In every case the temporary file is gone and ``zip_path`` is as it was.
    """
    manifest = folder_manifest(folder)
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in manifest:
                zf.write(folder / name, arcname=name)
        verify_zip(tmp, expected=manifest)
        check(tmp)


def zip_holds_meta_of(folder: Path, zip_path: Path) -> bool:
    """Whether ``zip_path`` holds, at its root, a ``meta.json`` equal (as JSON) to ``folder``'s.

    ``meta.json`` names the session's start time, streams and integrity record (first and last
    timestamps, sample counts), so two sessions never share one. False if either is missing,
    unreadable or too large; never raises for a damaged file.
    """
    where = str(folder)
    try:
        mine = read_small_file(folder / META_FILE, cap=META_MAX_BYTES, where=where, shown=META_FILE)
        with zipfile.ZipFile(zip_path) as zf:
            theirs = read_small_member(
                zf, META_FILE, cap=META_MAX_BYTES, where=str(zip_path), shown=META_FILE
            )
        if mine is None or theirs is None:
            return False
        return load_json(mine, as_written=False) == load_json(theirs, as_written=False)
    except Exception:  # noqa: BLE001 - a damaged zip or folder: not proven the same, so kept
        return False


def _rows_equal(mine: SessionStore, theirs: SessionStore, name: str, row: int) -> bool:
    """Whether row ``row`` of stream ``name`` (samples and timestamp) is the same in both."""
    for timestamps in (False, True):
        a = mine.read_rows(name, row, row + 1, timestamps=timestamps)
        b = theirs.read_rows(name, row, row + 1, timestamps=timestamps)
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            return False
    return True


def _other_members(zip_path: Path, streams: Sequence[str]) -> list[str]:
    """Members of session zip ``zip_path`` (without its top folder, if any) that are neither
    ``meta.json``, ``labels.json`` nor inside a stream's arrays."""
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    prefix = zip_prefix(zip_path, set(names))
    arrays = tuple(
        f"{array}/" for s in streams for array in (data_array_name(s), timestamps_array_name(s))
    )
    inner = (n[len(prefix) :] for n in names if n.startswith(prefix) and not n.endswith("/"))
    return [n for n in inner if n not in (META_FILE, LABELS_FILE) and not n.startswith(arrays)]


def _has_member(session: Path, member: str) -> bool:
    """Whether session folder or zip ``session`` holds ``member`` as a file (a link is not)."""
    try:
        if stat.S_ISDIR(os.lstat(session).st_mode):
            return stat.S_ISREG(os.lstat(session / member).st_mode)
        with zipfile.ZipFile(session) as zf:
            names = set(zf.namelist())
        return zip_prefix(session, names) + member in names
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def _held_problem(mine: SessionStore, theirs: SessionStore, shown: str) -> str | None:
    created = mine.meta.get("created")
    if not isinstance(created, str) or theirs.meta.get("created") != created:
        return f"is another recording (created {theirs.meta.get('created')!r}, {shown} {created!r})"
    if missing := [s for s in theirs.stream_names if s not in mine.stream_names]:
        return f"holds streams {missing} that {shown} lacks"
    for name in theirs.stream_names:
        n_theirs, n_mine = theirs.n_samples(name), mine.n_samples(name)
        if n_theirs > n_mine:
            return f"holds more samples of stream {name!r} ({n_theirs}; {shown} holds {n_mine})"
        for row in sorted({0, n_theirs - 1}) if n_theirs else ():
            if not _rows_equal(mine, theirs, name, row):
                return f"holds other samples of stream {name!r} than {shown} (sample {row})"
    labels, kept = theirs.label_track, list(mine.label_track)
    if len(labels) > len(kept):
        return f"holds more labels ({len(labels)}; {shown} holds {len(kept)})"
    for event in labels:
        if event not in kept:
            return f"holds a label that {shown} lacks ({event.class_index} at {event.timestamp})"
        kept.remove(event)
    for member in _other_members(theirs.path, theirs.stream_names):
        if not _has_member(mine.path, member):
            return f"holds {member!r}, which {shown} lacks"
    return None


def pack_held_by(session: Path, zip_path: Path, *, shown: str = "the folder") -> str | None:
    """Whether ``zip_path`` is an earlier pack of the recording in ``session``, held there in full.

    It is when both read as sessions, their ``meta.json`` ``created`` is the same (and set),
    every stream of the zip is in ``session`` with at least as many samples, the zip's first
    and last sample of each (values and timestamp) are ``session``'s at those rows, every label
    of the zip is in ``session``, and so is every other file of the zip (a note). Only then may
    the zip be replaced by, or removed beside, a pack of ``session``: nothing it holds is lost.
    Reads ``meta.json``, ``labels.json``, the arrays' metadata and a few chunks a stream (the
    first and the last), each checked (CRC-32 in a zip).

    Parameters
    ----------
    session
        The session that would take the zip's place: its folder, or its new zip.
    zip_path
        The zip found (a regular file).
    shown
        How ``session`` is named in the answer (``"the folder"``, ``"the new zip"``).

    Returns
    -------
    str or None
        None if the zip is held in full; else what it holds more of, or why it is not shown to
        be held (another recording, or it cannot be read), as a phrase following the zip's
        name: ``"holds more samples of stream 'emg' (1000; the folder holds 300)"``.
    """
    stage = f"cannot be compared: {session} does not read as a session"
    try:
        with SessionStore(session) as mine:
            stage = "cannot be read as a session"
            with SessionStore(zip_path) as theirs:
                stage = "cannot be compared"
                return _held_problem(mine, theirs, shown)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: not shown to be held
        why = " ".join(str(exc).split())
        return f"{stage} ({why}), so it is not known to hold less"


def is_regular_file(path: Path) -> bool:
    """Whether ``path`` is a regular file (a link is not followed)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def remove_earlier_packs(folder: Path, zip_path: Path) -> None:
    """Remove the zips beside ``zip_path`` named as packs of ``folder`` that hold an earlier pack
    of the same recording, all of it in ``zip_path`` (a pack killed before the session was
    renamed leaves one); keep any other, logging why."""
    for other in zips_of_folder(folder.parent, folder.name):
        if other == zip_path:
            continue
        problem = pack_held_by(zip_path, other, shown="the new zip")
        if problem is None and is_regular_file(other):
            try:
                os.unlink(other)
            except OSError as exc:
                log.warning(
                    "%s: an earlier pack of %s, not removed (%s)",
                    other,
                    zip_path.name,
                    exc.strerror,
                )
            else:
                log.info(
                    "%s: removed, an earlier pack of %s held in full by it", other, zip_path.name
                )
        elif problem is not None and not problem.startswith("is another recording"):
            log.warning("%s: packed; %s beside it is kept: it %s", zip_path, other.name, problem)
