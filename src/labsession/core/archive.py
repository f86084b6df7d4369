"""Archives: pack a folder into a verified zip or tar, and extract one safely.

Packing writes to a temporary file beside the destination, reads the result back (every member's
CRC for zip, every member's size for tar) and compares its member list with the source folder;
only then is the archive renamed into place. Extraction checks every member name first and refuses
absolute paths, ``..`` components, links and device files, naming the member, before anything is
written.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import io
import itertools
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

try:  # POSIX only
    import grp
    import pwd
except ImportError:  # pragma: no cover - Windows
    grp = pwd = None  # type: ignore[assignment]

from labsession.core.atomic import atomic_path, fsync_dir
from labsession.errors import ArchiveError, UnsafeArchiveMemberError

__all__ = [
    "PACK_IN_MEMORY_BYTES",
    "TAR_FORMATS",
    "check_link_text",
    "check_member_name",
    "compare_manifest",
    "folder_manifest",
    "link_target_inside",
    "pack_tar",
    "pack_zip",
    "remove_packed",
    "safe_extract",
    "tar_manifest",
    "tar_mode",
    "verify_tar",
    "verify_zip",
    "walk_folder",
]

#: Archive suffixes :func:`pack_tar` understands, with the ``tarfile`` compression they select.
TAR_FORMATS: dict[str, str] = {
    "tar": "",
    "tar.gz": "gz",
    "tgz": "gz",
    "tar.bz2": "bz2",
    "tar.xz": "xz",
}


def folder_manifest(src_dir: str | os.PathLike[str], *, links: bool = False) -> dict[str, int]:
    """Map every regular file under ``src_dir`` (POSIX relative path) to its size in bytes.

    Parameters
    ----------
    links
        Accept symbolic links that point inside ``src_dir`` (they are not listed).

    Raises
    ------
    ArchiveError
        If the folder holds a special file, or a symbolic link (with ``links``: one that points
        out of the folder).
    """
    return {
        name: st.st_size
        for name, st, _ in walk_folder(Path(src_dir), links=links)
        if stat.S_ISREG(st.st_mode)
    }


def check_link_text(target: str) -> None:
    """Refuse a link target that is empty, absolute, or climbs (``..``) after a name.

    Leading ``..`` are fine (``../CONFIGS``); ``b/../x`` is not: if ``b`` is itself a link, the
    ``..`` climbs from wherever ``b`` points, which no check of the text alone can bound.

    Raises
    ------
    ArchiveError
        Naming the target and the reason.
    """
    parts = PurePosixPath(target).parts
    leading = len(parts) - len(tuple(itertools.dropwhile(lambda part: part == "..", parts)))
    if not target or os.path.isabs(target):
        raise ArchiveError(f"link target {target!r} is empty or an absolute path")
    if ".." in parts[leading:]:
        raise ArchiveError(f"link target {target!r} climbs after a name")


def link_target_inside(root: str | os.PathLike[str], link: str | os.PathLike[str]) -> str:
    """The target of symbolic link ``link`` if it is relative and resolves inside ``root``.

    Raises
    ------
    ArchiveError
        If the target fails :func:`check_link_text` or resolves (following every link on the
        way) out of ``root``.
    """
    target = os.readlink(link)
    try:
        check_link_text(target)
    except ArchiveError as exc:
        raise ArchiveError(f"{link}: symbolic link refused: {exc}") from None
    real_root = os.path.realpath(root)
    resolved = os.path.realpath(link)
    if os.path.commonpath([real_root, resolved]) != real_root:
        raise ArchiveError(
            f"{link}: symbolic link to {target!r} points out of {root}; only relative links "
            "that stay inside the folder can be archived"
        )
    return target


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
        compare_manifest(zip_path, expected, found)
    return names


def compare_manifest(
    archive: object,
    expected: dict[str, int],
    found: dict[str, int],
    *,
    problem: str = "archive does not match its source",
) -> None:
    """Raise :class:`ArchiveError` naming the files missing, unexpected or of another size.

    ``expected`` and ``found`` map POSIX relative paths to sizes (as :func:`folder_manifest`
    and :func:`tar_manifest` return them); ``problem`` starts the message after the archive.
    """
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or extra or wrong:
        raise ArchiveError(
            f"{archive}: {problem} "
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


def _member_sizes(tf: tarfile.TarFile) -> dict[str, int]:
    """Read every file member of an open tar to its end and map its name to the bytes read."""
    found: dict[str, int] = {}
    for member in tf:
        if member.isfile():
            extracted = tf.extractfile(member)
            assert extracted is not None
            size = 0
            while block := extracted.read(1 << 20):
                size += len(block)
            found[member.name] = size
    return found


def tar_manifest(tar_path: str | os.PathLike[str]) -> dict[str, int]:
    """Read a tar archive to its end and map every file member to its size in bytes.

    Each member's data is read (not only its header), so a truncated or corrupt archive fails.

    Raises
    ------
    ArchiveError
        If it is unreadable or truncated.
    """
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            return _member_sizes(tf)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArchiveError(f"{tar_path}: not a readable tar archive ({exc})") from exc


def verify_tar(
    tar_path: str | os.PathLike[str], *, expected: dict[str, int] | None = None
) -> list[str]:
    """Read a tar archive to its end and return its file members (with their sizes checked).

    Raises
    ------
    ArchiveError
        If it is unreadable or truncated, or its files differ from ``expected``.
    """
    found = tar_manifest(tar_path)
    if expected is not None:
        compare_manifest(tar_path, expected, found)
    return list(found)


@functools.lru_cache(maxsize=64)
def _owner_names(uid: int, gid: int) -> tuple[str, str]:
    user = group = ""
    if pwd is not None:
        with contextlib.suppress(KeyError):
            user = pwd.getpwuid(uid).pw_name
    if grp is not None:
        with contextlib.suppress(KeyError):
            group = grp.getgrgid(gid).gr_name
    return user, group


def _tarinfo(name: str, st: os.stat_result, linkname: str | None = None) -> tarfile.TarInfo:
    # What TarFile.gettarinfo does, minus a stat and two passwd look-ups per member; the mtime is
    # whole seconds so that no PAX header is needed for it (half the header work on small files).
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname, info.gname = _owner_names(st.st_uid, st.st_gid)
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.size = 0
    elif linkname is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = linkname
        info.size = 0
    else:
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    return info


#: One entry of :func:`walk_folder`: POSIX relative path, its lstat, link target or None.
FolderEntry = tuple[str, os.stat_result, str | None]


def walk_folder(src: Path, *, links: bool = False) -> list[FolderEntry]:
    """Every folder, regular file (and with ``links`` inside link) under ``src``, sorted by path.

    Links are not followed. A descendant sorts after its folder, so the reversed list removes
    children first (:func:`remove_packed`).

    Raises
    ------
    ArchiveError
        On a special file, or a symbolic link (with ``links``: one that points out of ``src``).
    """
    entries: list[tuple[str, os.stat_result, str | None]] = []
    stack: list[tuple[str, str]] = [("", os.fspath(src))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                rel = prefix + entry.name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    entries.append((rel, st, None))
                    stack.append((rel + "/", entry.path))
                elif stat.S_ISREG(st.st_mode):
                    entries.append((rel, st, None))
                elif links and stat.S_ISLNK(st.st_mode):
                    entries.append((rel, st, link_target_inside(src, entry.path)))
                else:
                    kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "special file"
                    raise ArchiveError(
                        f"{entry.path}: only regular files and folders can be archived "
                        f"(found a {kind})"
                    )
    entries.sort(key=lambda e: e[0])
    return entries


#: :func:`pack_tar` packs a folder whose tar would take at most this many bytes in memory.
#: The gain is per member, so small folders get it all; the bound keeps each worker's peak
#: memory (the tar, its compressed copy and the read-back, a few times this) small.
PACK_IN_MEMORY_BYTES = 4 * 1024 * 1024

#: Whole-buffer (compress(raw, level), decompress(data)) for each ``tarfile`` compression.
_CODECS: dict[str, tuple[Callable[[bytes, int], bytes], Callable[[bytes], bytes]]] = {
    "": (lambda raw, level: raw, lambda data: data),
    "gz": (lambda raw, level: gzip.compress(raw, compresslevel=level, mtime=0), gzip.decompress),
    "bz2": (lambda raw, level: bz2.compress(raw, level), bz2.decompress),
    "xz": (lambda raw, level: lzma.compress(raw), lzma.decompress),
}


def _tar_size(top: str, entries: list[FolderEntry]) -> int:
    """An upper bound on the size of the uncompressed tar of ``entries``.

    Each member takes a 512-byte header, its data padded to 512 bytes, and at most a PAX
    header (long or non-ASCII names, owner names) of its own, bounded here generously.
    """
    size = 1024 + 2048 + 2 * len(top)  # end-of-archive blocks, the top folder
    for name, st, linkname in entries:
        data = -(-st.st_size // 512) * 512 if linkname is None else 0
        size += 512 + data + 1536 + 2 * (len(top) + len(name) + len(linkname or ""))
    return size


def _copy_listed_file(
    tf: tarfile.TarFile, info: tarfile.TarInfo, path: str, listed: os.stat_result
) -> None:
    """Add file ``path`` to ``tf`` if it is still the very file listed (never through a link)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ArchiveError(f"{path}: changed since the folder was listed ({exc})") from exc
    # Unbuffered: tarfile reads exactly the member size, in large blocks.
    with open(fd, "rb", buffering=0) as f:
        if _identity(os.fstat(fd))[:2] != _identity(listed)[:2]:  # another inode
            raise ArchiveError(f"{path}: replaced since the folder was listed; not packed")
        try:
            tf.addfile(info, f)
        except OSError as exc:
            if os.fstat(fd).st_size >= info.size:  # not the file running short: disk, etc.
                raise
            raise ArchiveError(
                f"{path}: shorter than when the folder was listed ({exc}); not packed"
            ) from exc


def _add_entries(tf: tarfile.TarFile, src: Path, top: str, entries: list[FolderEntry]) -> None:
    root = os.fspath(src)
    tf.addfile(_tarinfo(top or ".", src.stat()))
    for name, st, linkname in entries:
        info = _tarinfo(f"{top}/{name}" if top else name, st, linkname)
        if info.isdir() or info.issym():
            tf.addfile(info)
        else:
            _copy_listed_file(tf, info, os.path.join(root, name), st)


def _write_in_memory(
    tmp: Path, src: Path, top: str, entries: list[FolderEntry], compression: str, level: int
) -> dict[str, int]:
    """Pack into memory, check the tar, write it compressed, read the file back and compare."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        _add_entries(tf, src, top, entries)
    raw = buffer.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        packed = _member_sizes(tf)
    compress, decompress = _CODECS[compression]
    data = compress(raw, level)
    with open(tmp, "wb") as f:
        f.write(data)
    with open(tmp, "rb") as f:
        written = f.read()
    if written != data or decompress(written) != raw:
        raise ArchiveError(f"{tmp}: the archive read back differs from what was written")
    return packed


def pack_tar(
    src_dir: str | os.PathLike[str],
    tar_path: str | os.PathLike[str],
    *,
    arcname: str | None = None,
    compresslevel: int = 1,
    fsync: bool = True,
    links: bool = False,
    entries: list[FolderEntry] | None = None,
    memory_limit: int = PACK_IN_MEMORY_BYTES,
) -> Path:
    """Pack ``src_dir`` into a tar archive (compression from the suffix), verify, move into place.

    Members sit under ``arcname/`` (default: the folder's own name), so extraction recreates the
    folder. The archive is verified against the folder's manifest (every member's data read
    back, its size compared) before the rename. Modification times are stored in whole seconds.

    A folder whose tar takes at most ``memory_limit`` bytes (run folders, typically) is
    packed in memory: its tar is read back and checked there, compressed in one call, written,
    and the file read back must equal the bytes written and decompress to the checked tar.
    Larger folders are streamed through :mod:`tarfile` and the file is read back as a stream.
    Both give the same members; for a run of a few small files the in-memory path spends about
    15 % less CPU time (one compression and one write instead of one per header and file).

    Parameters
    ----------
    fsync
        Flush the archive and its folder to disk before returning (keep True when the source
        is removed afterwards).
    links
        Store symbolic links that point inside the folder as links (others still raise
        :class:`~labsession.errors.ArchiveError`, before anything is written).
    entries
        The folder's :func:`walk_folder` listing, when the caller already made it (to remove
        exactly what was packed with :func:`remove_packed`).
    memory_limit
        Largest tar (file data, headers and padding) packed in memory (0: always stream).

    Raises
    ------
    ArchiveError
        If the folder holds a special file or a link out of it, a listed file was replaced or
        shrank before it was packed, or the archive does not read back as the listing.
    ValueError
        If ``compresslevel`` is out of range for the compression.
    """
    src = Path(src_dir)
    top = src.name if arcname is None else arcname
    if entries is None:
        entries = walk_folder(src, links=links)
    expected = {
        f"{top}/{name}" if top else name: st.st_size
        for name, st, _ in entries
        if stat.S_ISREG(st.st_mode)
    }
    compression = tar_mode(tar_path)
    lowest = {"gz": 0, "bz2": 1}.get(compression)
    if lowest is not None and compresslevel not in range(lowest, 10):
        raise ValueError(f"compresslevel {compresslevel!r} out of range for {compression}")
    with atomic_path(tar_path, fsync=fsync) as tmp:
        if memory_limit > 0 and _tar_size(top, entries) <= memory_limit:
            try:
                found = _write_in_memory(tmp, src, top, entries, compression, compresslevel)
            except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
                raise ArchiveError(
                    f"{tar_path}: packed archive does not read back ({exc})"
                ) from exc
            compare_manifest(tar_path, expected, found)
        else:
            kwargs = {"compresslevel": compresslevel} if compression in ("gz", "bz2") else {}
            with tarfile.open(tmp, f"w:{compression}", **kwargs) as tf:  # type: ignore[call-overload]
                _add_entries(tf, src, top, entries)
            verify_tar(tmp, expected=expected)
    return Path(tar_path)


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What tells that a path is still the very file that was listed (not a copy or rewrite)."""
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def remove_packed(src_dir: str | os.PathLike[str], entries: list[FolderEntry]) -> list[str]:
    """Remove exactly what ``entries`` (the listing packed) holds, then the folder if empty.

    Only the very files, links and folders listed are removed: one that was rewritten,
    replaced (even by a copy with the same size and times) or added since is kept, with the
    folders above it. Paths are resolved through open folder descriptors that refuse links,
    so a folder swapped for a link since the listing never leads the removal elsewhere.
    Returns the relative paths left behind (``"."`` for the folder itself).
    """
    src = Path(src_dir)
    listed = {rel: st for rel, st, _ in entries}
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0)
    fds: dict[str, int | None] = {}

    def folder_fd(rel: str) -> int | None:
        """An open descriptor of listed folder ``rel`` ("" = the root), None if it changed."""
        if rel in fds:
            return fds[rel]
        fd = None
        try:
            if not rel:
                fd = os.open(src, flags)
            else:
                parent, _, name = rel.rpartition("/")
                parent_fd = folder_fd(parent)
                if parent_fd is not None:
                    fd = os.open(name, flags, dir_fd=parent_fd)
                    if _identity(os.fstat(fd))[:2] != _identity(listed[rel])[:2]:
                        os.close(fd)
                        fd = None
        except OSError:
            fd = None
        fds[rel] = fd
        return fd

    kept: list[str] = []
    try:
        for rel, before, _ in reversed(entries):  # children before their folders
            parent, _, name = rel.rpartition("/")
            parent_fd = folder_fd(parent)
            if parent_fd is None:
                kept.append(rel)
                continue
            if stat.S_ISDIR(before.st_mode):
                own = fds.pop(rel, None)
                if own is not None:
                    os.close(own)
                try:
                    os.rmdir(name, dir_fd=parent_fd)
                except FileNotFoundError:
                    pass
                except OSError:  # not empty (it holds something kept), or no longer a folder
                    kept.append(rel)
                continue
            try:
                now = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if _identity(now) != _identity(before):
                kept.append(rel)
                continue
            os.unlink(name, dir_fd=parent_fd)
    finally:
        for fd in fds.values():
            if fd is not None:
                os.close(fd)
    try:
        os.rmdir(src)
    except OSError:
        kept.append(".")
    return kept


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
