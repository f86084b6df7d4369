"""Packing a session folder into its zip: written aside, verified whole, then put in place.

:func:`pack_folder` writes the zip under a temporary name beside its destination, reads every
member back (CRC-32, and the member list against the folder), checks it as the recorded session
(:func:`verify_packed`), and only then renames it into place, replacing a zip of that name if
there is one (as MyoGestic does: the folder is the source). On any failure the temporary file
is removed and a zip already in place is left exactly as it was.

:func:`zip_holds_meta_of` tells whether a zip was packed from a given folder (used to finish the
removal of a packed folder that a kill interrupted).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from labsession.core.archive import folder_manifest, verify_zip
from labsession.core.atomic import atomic_path
from labsession.errors import ArchiveError
from labsession.recording._layout import (
    META_FILE,
    read_small_file,
    read_small_member,
)
from labsession.recording._records import LabelEvent, StreamInfo
from labsession.recording._schema import META_MAX_BYTES, load_json
from labsession.recording._store import SessionStore

__all__ = ["pack_folder", "verify_packed", "zip_holds_meta_of"]


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
        shape).
    SessionError
        If the zip does not open as a session.
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
    sizes against the folder), passed to ``check`` (e.g. :func:`verify_packed`), and only then
    renamed onto ``zip_path`` (atomically replacing a file there: a link is replaced, never
    followed). Its mode follows the umask.

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
