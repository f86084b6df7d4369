"""Zip archives: pack a folder into a verified zip, and verify one."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from labsession.core.archive._manifest import compare_manifest, folder_manifest
from labsession.core.atomic import atomic_path
from labsession.errors import ArchiveError

__all__ = ["pack_zip", "verify_zip"]


def verify_zip(
    zip_path: str | os.PathLike[str], *, expected: dict[str, int] | None = None
) -> list[str]:
    """Read every member of a zip back, checking its CRC, and return the member names.

    Parameters
    ----------
    zip_path
        The archive.
    expected
        If given, the exact ``{member: size}`` the archive must hold (e.g. from
        :func:`~labsession.core.archive.folder_manifest`).

    Raises
    ------
    ArchiveError
        If the file is not a zip, is truncated, a CRC fails, or the members differ from
        ``expected``.
    """
    try:
        with zipfile.ZipFile(zip_path) as zf:
            bad = zf.testzip()
            infos = zf.infolist()
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as exc:
        raise ArchiveError(f"{zip_path}: not a readable zip archive ({exc})") from exc
    if bad is not None:
        raise ArchiveError(f"{zip_path}: member {bad!r} fails its CRC check (corrupt archive)")
    names = [info.filename for info in infos if not info.is_dir()]
    if expected is not None:
        found = {info.filename: info.file_size for info in infos if not info.is_dir()}
        compare_manifest(zip_path, expected, found)
    return names


def pack_zip(
    src_dir: str | os.PathLike[str],
    zip_path: str | os.PathLike[str],
    *,
    compression: int = zipfile.ZIP_STORED,
    prefix: str = "",
) -> Path:
    """Pack the files of ``src_dir`` into ``zip_path``, verify it, and move it into place.

    Members sit at the archive root (or under ``prefix``), in sorted order. The archive is written
    to a temporary file ``.<zip name>.<8 hex>.tmp`` beside ``zip_path``; on any failure that file
    is removed and ``zip_path`` is left as it was. The archive's mode follows the umask.

    Returns
    -------
    Path
        ``zip_path``.
    """
    src = Path(src_dir)
    manifest = folder_manifest(src)
    expected = {prefix + name: size for name, size in manifest.items()}
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=compression, allowZip64=True) as zf:
            for name in manifest:
                zf.write(src / name, arcname=prefix + name)
        verify_zip(tmp, expected=expected)
    return Path(zip_path)
