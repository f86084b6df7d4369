"""Archives: pack a folder into a verified zip or tar, and extract one safely.

Packing writes to a temporary file beside the destination, reads the result back (every member's
CRC for zip, every member's size for tar) and compares its member list with the source folder;
only then is the archive renamed into place. Extraction checks every member name first and refuses
absolute paths, ``..`` components, links and device files, naming the member, before anything is
written.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from labsession.core.atomic import atomic_path, fsync_dir
from labsession.errors import ArchiveError, UnsafeArchiveMemberError

__all__ = [
    "TAR_FORMATS",
    "check_member_name",
    "folder_manifest",
    "pack_tar",
    "pack_zip",
    "safe_extract",
    "tar_mode",
    "verify_tar",
    "verify_zip",
]

#: Archive suffixes :func:`pack_tar` understands, with the ``tarfile`` compression they select.
TAR_FORMATS: dict[str, str] = {
    "tar": "",
    "tar.gz": "gz",
    "tgz": "gz",
    "tar.bz2": "bz2",
    "tar.xz": "xz",
}


def folder_manifest(src_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Map every regular file under ``src_dir`` (POSIX relative path) to its size in bytes.

    Raises
    ------
    ArchiveError
        If the folder holds a symbolic link or a special file, which archives here never carry.
    """
    src = Path(src_dir)
    manifest: dict[str, int] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise ArchiveError(
                f"{path}: only regular files and folders can be archived "
                f"(found a {'symbolic link' if stat.S_ISLNK(mode) else 'special file'})"
            )
        manifest[rel] = path.stat().st_size
    return manifest


def check_member_name(name: str, *, archive: str | os.PathLike[str] = "") -> PurePosixPath:
    """Return ``name`` as a relative POSIX path, or raise if it would escape the destination.

    Raises
    ------
    UnsafeArchiveMemberError
        For an absolute path, a drive letter, a ``..`` component or an empty name.
    """
    where = f"{archive}: " if archive else ""
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    if not normalised or normalised.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveMemberError(f"{where}member {name!r} has an absolute path; refused")
    if ".." in path.parts:
        raise UnsafeArchiveMemberError(
            f"{where}member {name!r} climbs out of the destination with '..'; refused"
        )
    return path


def _zip_member_is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


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
        :func:`folder_manifest`).

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
        _compare_manifest(zip_path, expected, found)
    return names


def _compare_manifest(archive: object, expected: dict[str, int], found: dict[str, int]) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or extra or wrong:
        raise ArchiveError(
            f"{archive}: archive does not match its source "
            f"(missing {missing[:5]}, unexpected {extra[:5]}, size differs {wrong[:5]})"
        )


def pack_zip(
    src_dir: str | os.PathLike[str],
    zip_path: str | os.PathLike[str],
    *,
    compression: int = zipfile.ZIP_STORED,
    prefix: str = "",
) -> Path:
    """Pack the files of ``src_dir`` into ``zip_path``, verify it, and move it into place.

    Members sit at the archive root (or under ``prefix``), in sorted order. The archive is written
    to a temporary file beside ``zip_path``; on any failure that file is removed and ``zip_path``
    is left as it was.

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


def tar_mode(path: str | os.PathLike[str]) -> str:
    """Return the ``tarfile`` compression (``""``, ``"gz"``, ...) chosen by ``path``'s suffix."""
    name = Path(path).name
    for suffix in sorted(TAR_FORMATS, key=len, reverse=True):
        if name.endswith("." + suffix):
            return TAR_FORMATS[suffix]
    raise ArchiveError(f"{path}: unknown archive suffix; expected one of {sorted(TAR_FORMATS)}")


def verify_tar(
    tar_path: str | os.PathLike[str], *, expected: dict[str, int] | None = None
) -> list[str]:
    """Read a tar archive to its end and return its file members (with their sizes checked).

    Raises
    ------
    ArchiveError
        If it is unreadable or truncated, or its files differ from ``expected``.
    """
    found: dict[str, int] = {}
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            for member in tf:
                if member.isfile():
                    extracted = tf.extractfile(member)
                    assert extracted is not None
                    size = 0
                    while block := extracted.read(1 << 20):
                        size += len(block)
                    found[member.name] = size
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{tar_path}: not a readable tar archive ({exc})") from exc
    if expected is not None:
        _compare_manifest(tar_path, expected, found)
    return list(found)


def pack_tar(
    src_dir: str | os.PathLike[str],
    tar_path: str | os.PathLike[str],
    *,
    arcname: str | None = None,
    compresslevel: int = 1,
) -> Path:
    """Pack ``src_dir`` into a tar archive (compression from the suffix), verify, move into place.

    Members sit under ``arcname/`` (default: the folder's own name), so extraction recreates the
    folder. The archive is verified against the folder's manifest before the rename.
    """
    src = Path(src_dir)
    top = src.name if arcname is None else arcname
    manifest = folder_manifest(src)
    expected = {f"{top}/{name}" if top else name: size for name, size in manifest.items()}
    compression = tar_mode(tar_path)
    kwargs = {"compresslevel": compresslevel} if compression in ("gz", "bz2") else {}
    with atomic_path(tar_path) as tmp:
        with tarfile.open(tmp, f"w:{compression}", **kwargs) as tf:  # type: ignore[call-overload]
            tf.add(src, arcname=top or ".", recursive=True)
        verify_tar(tmp, expected=expected)
    return Path(tar_path)


def _check_zip_members(zip_path: Path, infos: Iterable[zipfile.ZipInfo]) -> None:
    for info in infos:
        check_member_name(info.filename, archive=zip_path)
        if _zip_member_is_link(info):
            raise UnsafeArchiveMemberError(
                f"{zip_path}: member {info.filename!r} is a symbolic link; refused"
            )


def _check_tar_members(tar_path: Path, members: Iterable[tarfile.TarInfo]) -> None:
    for member in members:
        check_member_name(member.name, archive=tar_path)
        if member.issym() or member.islnk():
            raise UnsafeArchiveMemberError(
                f"{tar_path}: member {member.name!r} is a link to {member.linkname!r}; refused"
            )
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveMemberError(
                f"{tar_path}: member {member.name!r} is a device or special file; refused"
            )


def safe_extract(archive_path: str | os.PathLike[str], dest_dir: str | os.PathLike[str]) -> Path:
    """Extract a zip or tar archive into ``dest_dir`` after checking every member.

    Nothing is written unless every member is a plain file or folder whose path stays inside
    ``dest_dir``.

    Raises
    ------
    UnsafeArchiveMemberError
        Naming the first member that is absolute, climbs out with ``..``, is a link or a device.
    ArchiveError
        If the archive is unreadable or truncated.
    """
    archive = Path(archive_path)
    dest = Path(dest_dir)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_zip_members(archive, zf.infolist())
                dest.mkdir(parents=True, exist_ok=True)
                zf.extractall(dest)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                _check_tar_members(archive, members)
                dest.mkdir(parents=True, exist_ok=True)
                tf.extractall(dest, members=members, filter="data")
    except UnsafeArchiveMemberError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"{archive}: cannot extract ({exc})") from exc
    fsync_dir(dest)
    return dest
