"""A session's zip checked against what was recorded: after a pack, and when a kill left both.

A pack writes the zip under a temporary name, renames it into place, then removes the folder. A
kill between the rename and the removal leaves the folder and its whole zip side by side. The
next pack of that folder (``Session.attach(folder).pack_to_zip()``) keeps the zip and removes the
folder only if :func:`check_earlier_zip` finds every byte of the folder in the zip; otherwise it
refuses and says why, keeping both.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from labsession.core.archive import folder_manifest, verify_zip
from labsession.errors import ArchiveError, LabsessionError, SessionError
from labsession.recording._layout import LABELS_FILE, META_FILE
from labsession.recording._records import LabelEvent, StreamInfo
from labsession.recording._store import SessionStore

__all__ = ["check_earlier_zip", "verify_packed"]

#: Bytes read at a time to compute a file's CRC-32.
_BLOCK = 1 << 20


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


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def _check_folder_in_zip(folder: Path, zip_path: Path) -> None:
    """Raise :class:`ArchiveError` unless every file of ``folder`` is in the zip, the same:
    ``meta.json`` as the same JSON, ``labels.json`` by :func:`verify_packed`, all others by
    size and CRC-32 (the zip's CRCs are checked against its data by ``verify_zip``)."""
    manifest = folder_manifest(folder)  # regular files only: a link or a pipe is refused
    with zipfile.ZipFile(zip_path) as zf:
        members = {info.filename: info for info in zf.infolist() if not info.is_dir()}
        for name, size in manifest.items():
            info = members.get(name)
            if info is None:
                raise ArchiveError(f"{folder / name} is not in the zip")
            if name == LABELS_FILE:
                continue
            if name == META_FILE:
                same = json.loads((folder / name).read_bytes()) == json.loads(zf.read(info))
            else:
                same = info.file_size == size and _crc32(folder / name) == info.CRC
            if not same:
                raise ArchiveError(f"{folder / name} differs from the zip's {name}")


def check_earlier_zip(
    folder: Path,
    zip_path: Path,
    infos: Mapping[str, StreamInfo],
    n_samples: Mapping[str, int],
    labels: Sequence[LabelEvent],
) -> None:
    """Check that ``zip_path``, found beside ``folder`` before packing it, already holds it all.

    It must be a regular file, read back whole (every member's CRC), hold the recorded
    session (:func:`verify_packed`) and every file of ``folder`` (``meta.json`` as the same
    JSON, the others byte for byte). Reads the zip and the folder once each.

    Raises
    ------
    SessionError
        Naming the zip and why it does not hold the folder: then neither is to be changed.
    """

    def refuse(why: str) -> SessionError:
        return SessionError(
            f"{zip_path}: already exists but {why}; refusing to overwrite it, and the folder "
            f"{folder.name} is kept: move the zip elsewhere to pack the folder again"
        )

    try:
        mode = os.lstat(zip_path).st_mode
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror})") from exc
    if not stat.S_ISREG(mode):
        raise refuse("is not a regular file")
    try:
        verify_zip(zip_path)
        verify_packed(zip_path, infos, n_samples, labels)
        _check_folder_in_zip(folder, zip_path)
    except (LabsessionError, OSError, ValueError) as exc:
        why = str(exc).removeprefix(f"{zip_path}: ")
        raise refuse(f"does not hold this recording ({why})") from exc
