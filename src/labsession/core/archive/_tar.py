"""Tar archives: pack a folder into a verified tar (plain or compressed), and verify one."""

from __future__ import annotations

import bz2
import contextlib
import functools
import gzip
import io
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

try:  # POSIX only
    import grp
    import pwd
except ImportError:  # pragma: no cover - Windows
    grp = pwd = None  # type: ignore[assignment]

from labsession.core.archive._manifest import (
    BY_FOLDER,
    FolderEntry,
    ListedFolders,
    compare_manifest,
    identity,
    walk_folder,
)
from labsession.core.archive._ustar import TarBuilder, walk_members
from labsession.core.atomic import atomic_path
from labsession.errors import ArchiveError

__all__ = [
    "PACK_IN_MEMORY_BYTES",
    "TAR_FORMATS",
    "pack_tar",
    "tar_manifest",
    "tar_mode",
    "verify_tar",
]

#: Archive suffixes :func:`pack_tar` understands, with the ``tarfile`` compression they select.
TAR_FORMATS: dict[str, str] = {
    "tar": "",
    "tar.gz": "gz",
    "tgz": "gz",
    "tar.bz2": "bz2",
    "tar.xz": "xz",
}

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
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
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


#: Flags opening a listed file: never through a link, never waiting (a named pipe put in its
#: place opens at once, and is refused as another inode, instead of waiting for a writer).
_FILE_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class _ListedFiles(ListedFolders):
    """:class:`~labsession.core.archive._manifest.ListedFolders` that also opens the listed
    files (never through a link, never waiting), each checked to be the very file listed."""

    @contextlib.contextmanager
    def open(self, rel: str, listed: os.stat_result) -> Iterator[int]:
        """An open descriptor of listed file ``rel`` if it is still the very file listed."""
        path = self.path(rel)
        parent, _, name = rel.rpartition("/")
        try:
            if BY_FOLDER:
                fd = os.open(name, _FILE_FLAGS, dir_fd=self.folder(parent))
            else:  # pragma: no cover - Windows
                fd = os.open(path, _FILE_FLAGS)
        except OSError as exc:
            raise ArchiveError(f"{path}: changed since the folder was listed ({exc})") from exc
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode) or identity(now)[:2] != identity(listed)[:2]:
                raise ArchiveError(f"{path}: replaced since the folder was listed; not packed")
            yield fd
        finally:
            os.close(fd)


def _shorter(path: str, exc: object) -> ArchiveError:
    return ArchiveError(f"{path}: shorter than when the folder was listed ({exc}); not packed")


def _copy_listed_file(
    tf: tarfile.TarFile,
    info: tarfile.TarInfo,
    folders: _ListedFiles,
    rel: str,
    listed: os.stat_result,
) -> None:
    """Add file ``rel`` to ``tf`` if it is still the very file listed (never through a link)."""
    # Unbuffered: tarfile reads exactly the member size, in large blocks.
    with folders.open(rel, listed) as fd, open(fd, "rb", buffering=0, closefd=False) as f:
        try:
            tf.addfile(info, f)
        except OSError as exc:
            if os.fstat(fd).st_size >= info.size:  # not the file running short: disk, etc.
                raise
            raise _shorter(folders.path(rel), exc) from exc


def _read_listed_file(folders: _ListedFiles, rel: str, listed: os.stat_result, size: int) -> bytes:
    """The first ``size`` bytes of file ``rel`` if it is still the very file listed."""
    with folders.open(rel, listed) as fd:
        parts, got = [], 0
        while got < size:
            block = os.read(fd, size - got)
            if not block:
                raise _shorter(folders.path(rel), f"{got} of {size} bytes")
            parts.append(block)
            got += len(block)
    return b"".join(parts)


def _add_entries(tf: tarfile.TarFile, src: Path, top: str, entries: list[FolderEntry]) -> None:
    tf.addfile(_tarinfo(top or ".", src.stat()))
    with _ListedFiles(src, entries, follow_top=True) as folders:
        for name, st, linkname in entries:
            info = _tarinfo(f"{top}/{name}" if top else name, st, linkname)
            if info.isdir() or info.issym():
                tf.addfile(info)
            else:
                _copy_listed_file(tf, info, folders, name, st)


def _tar_in_memory(src: Path, top: str, entries: list[FolderEntry]) -> tuple[bytes, bool]:
    """The tar :func:`_add_entries` would write, built in memory; and whether every header is
    a plain ustar one (see :class:`~labsession.core.archive._ustar.TarBuilder`)."""
    builder = TarBuilder()
    builder.add(_tarinfo(top or ".", src.stat()))
    with _ListedFiles(src, entries, follow_top=True) as folders:
        for name, st, linkname in entries:
            info = _tarinfo(f"{top}/{name}" if top else name, st, linkname)
            # An empty file too is opened: it must still be the very file listed.
            data = _read_listed_file(folders, name, st, info.size) if info.isfile() else b""
            builder.add(info, data)
    return builder.finish(), builder.plain


def _write_in_memory(
    tmp: Path, src: Path, top: str, entries: list[FolderEntry], compression: str, level: int
) -> dict[str, int]:
    """Pack into memory, check the tar, write it compressed, read the file back and compare."""
    raw, plain = _tar_in_memory(src, top, entries)
    packed = walk_members(raw) if plain else None
    if packed is None:
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
    The archive's mode follows the umask.

    A folder whose tar takes at most ``memory_limit`` bytes (run folders, typically) is
    packed in memory: its tar is read back and checked there, compressed in one call, written,
    and the file read back must equal the bytes written and decompress to the checked tar.
    Its tar is built directly (:mod:`labsession.core.archive._ustar`: byte for byte what
    :mod:`tarfile` writes, without its per-member Python overhead) and its headers walked back.
    Larger folders are streamed through :mod:`tarfile` and the file is read back as a stream.
    Both give the same members; for a run of ten small files the in-memory path spends less
    than half the CPU time (one compression and one write instead of one per header and file,
    headers built and checked without :mod:`tarfile`).

    Parameters
    ----------
    fsync
        Flush the archive and its folder to disk before returning (keep True when the source
        is removed afterwards).
    links
        Store symbolic links that point inside the folder as links (others still raise
        :class:`~labsession.errors.ArchiveError`, before anything is written).
    entries
        The folder's :func:`~labsession.core.archive.walk_folder` listing, when the caller
        already made it (to remove exactly what was packed with
        :func:`~labsession.core.archive.remove_packed`).
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
