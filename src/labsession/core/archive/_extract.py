"""The one checked extractor: a zip or tar into a private folder beside the destination.

Every member is checked before anything is written for it. Names must stay inside the folder
(no empty name, NUL byte, absolute path, drive letter or ``..``); plain files and folders are
written as they come, each file created new (never over an existing path, so a name that
appears twice, or twice in letter case on a case-insensitive file system, is refused).
Symbolic links are refused, or with ``links`` created only after the last file (so no write
ever goes through one), never under another link, and only if they resolve inside the folder,
checked again once every link is in place (chains cannot climb out). Hard links, devices and
FIFOs are refused. Sizes are bounded: the members' declared sizes (plus one 512-byte header
each, as a tar counts them) may not exceed ``max_bytes`` (default :func:`default_max_bytes`) nor
the free space; a zip is checked in full before anything is written, a tar (which has no index)
at each member's header before its data; a member holding other than its declared bytes is
refused. A tar must be well formed to its end: a corrupt or missing header, data after the
end-of-archive block, or a failing gzip CRC refuse it (``tarfile`` alone ends the archive early at
such a header, without a word, and never checks gzip's CRC in stream mode). Files and folders
are created with the umask applied by the kernel; a tar member keeps its owner/group/other read
and execute bits (never set-id bits or group/other write).

Everything is written to a private folder ``.<dest name>.restoring-<8 hex>`` beside the
destination; any refusal or error (an ``OSError`` too: over-long name, permission denied, disk
full) removes it and raises :class:`~labsession.errors.ArchiveError` naming the archive and the
member. The caller moves the folder into place with one rename.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import secrets
import shutil
import stat
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from labsession.core.archive._manifest import compare_manifest, folder_manifest, walk_folder
from labsession.core.archive._names import (
    check_link_text,
    check_member_name,
    link_target_inside,
)
from labsession.core.archive._read import CheckedTarInfo, CorruptTar, archive_kind
from labsession.core.atomic import fsync_dir
from labsession.errors import ArchiveError, UnsafeArchiveMemberError

__all__ = [
    "MAX_BYTES_FLOOR",
    "MAX_EXPANSION",
    "default_max_bytes",
    "safe_extract",
    "staged_extract",
]

#: The default extraction limit is never below this many bytes (64 MiB).
MAX_BYTES_FLOOR = 64 * 1024 * 1024
#: By default an archive may extract to at most this many times its own size.
MAX_EXPANSION = 100
#: What each member costs the size budget besides its data (a tar header).
_MEMBER_BYTES = 512
#: Longest link target read from a zip member (a zip stores the target as the member's data).
_MAX_LINK_TEXT = 4096
#: How much (in 64 KiB blocks) of a tar's padding after its end block is checked to be zeros.

_NEW_FILE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_UTIME_BY_FD = os.utime in os.supports_fd
#: Zeros after a tar's end block always accepted (a record is 10 KiB; more counts as content).
_MAX_PADDING = 1 << 20

_CORRUPT = (
    tarfile.TarError,
    gzip.BadGzipFile,  # an OSError: listed before OSError is caught as a write failure
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # a zip compression method zipfile does not know
    ValueError,  # a malformed name (UnicodeDecodeError) or pax sparse map in tarfile/zipfile
)


def default_max_bytes(archive_size: int) -> int:
    """The most bytes an archive of ``archive_size`` bytes may extract to by default.

    ``max(MAX_BYTES_FLOOR, MAX_EXPANSION * archive_size)``: 64 MiB, or 100 times the archive
    (gzip packs zeros about 1000-fold, real data and logs 1- to 20-fold).
    """
    return max(MAX_BYTES_FLOOR, MAX_EXPANSION * archive_size)


class _NotUnderOneFolder(Exception):
    """A member does not sit under the folder to strip; extract again without stripping."""


class _Extraction:
    """The state of one extraction into the fresh folder ``root``."""

    def __init__(
        self, archive: Path, root: Path, *, strip: str | None, links: bool, limit: int
    ) -> None:
        self.archive = archive
        self.root = root
        self.strip = strip
        self.links = links
        self.limit = limit
        try:
            self.free = shutil.disk_usage(root).free
        except OSError:  # pragma: no cover - unknown: let writing find out
            self.free = sys.maxsize
        self.total = 0
        self.member = ""  # the member being handled, named by errors
        self.written: dict[str, int] = {}
        self.made: set[Path] = {root}
        self.deferred: list[tuple[str, Path, str]] = []  # (member, path, link target)

    def refuse(self, what: str) -> UnsafeArchiveMemberError:
        return UnsafeArchiveMemberError(f"{self.archive}: member {self.member!r} {what}; refused")

    def place(self, name: str, *, is_dir: bool) -> tuple[str, ...]:
        """The checked relative path of member ``name`` (``()`` for the root folder itself)."""
        self.member = name
        parts = check_member_name(name, archive=self.archive).parts
        if self.strip is not None:
            if not parts or parts[0] != self.strip or (len(parts) == 1 and not is_dir):
                raise _NotUnderOneFolder(name)
            parts = parts[1:]
        if not parts and not is_dir:
            raise self.refuse("names the destination folder itself but is not a folder")
        return parts

    def charge(self, name: str, size: int) -> None:
        """Count a member's declared ``size`` against the limit and the free space."""
        self.total += size + _MEMBER_BYTES
        if self.total > self.limit:
            raise ArchiveError(
                f"{self.archive}: member {name!r} declares {size} bytes, which brings the "
                f"archive to {self.total} bytes (with 512 per member), over the limit of "
                f"{self.limit} bytes; refused (a larger max_bytes, --max-bytes on the command "
                f"line, allows more)"
            )
        if self.total > self.free:
            raise ArchiveError(
                f"{self.archive}: member {name!r} brings the archive to {self.total} bytes, "
                f"more than the {self.free} bytes free in {self.root.parent}; refused"
            )

    def make_dir(self, parts: tuple[str, ...]) -> None:
        path = self.root.joinpath(*parts)
        if path not in self.made:
            path.mkdir(parents=True, exist_ok=True)  # no link exists yet: none is followed
            self.made.add(path)

    def write_file(
        self,
        parts: tuple[str, ...],
        source: IO[bytes],
        declared: int,
        mode: int,
        mtime: float | None,
    ) -> None:
        """Create the file (never an existing path), copy at most ``declared`` bytes in."""
        self.make_dir(parts[:-1])
        path = self.root.joinpath(*parts)
        fd = os.open(path, _NEW_FILE_FLAGS, mode)  # the kernel applies the umask
        size = 0
        try:
            while block := source.read(min(1 << 20, declared - size + 1)):
                size += len(block)
                if size > declared:
                    raise ArchiveError(
                        f"{self.archive}: member {self.member!r} holds more than the "
                        f"{declared} bytes its header declares; refused"
                    )
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
            if mtime is not None and _UTIME_BY_FD:
                with contextlib.suppress(OverflowError, ValueError):
                    os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        if mtime is not None and not _UTIME_BY_FD:  # Windows: by path, once closed
            with contextlib.suppress(OverflowError, ValueError):
                os.utime(path, (mtime, mtime))
        if size != declared:
            raise ArchiveError(
                f"{self.archive}: member {self.member!r} holds {size} bytes, its header "
                f"says {declared}"
            )
        self.written["/".join(parts)] = size

    def add_link(self, parts: tuple[str, ...], target: str) -> None:
        """Check a symbolic link's text now; create it after the last file."""
        if not self.links:
            raise self.refuse(f"is a symbolic link to {target!r}")
        try:
            check_link_text(target)
        except ArchiveError as exc:
            raise self.refuse(f"links to a refused target: {exc}") from None
        self.deferred.append((self.member, self.root.joinpath(*parts), target))

    def finish_links(self) -> None:
        for name, path, target in self.deferred:
            self.member = name
            self._make_link(path, target)
        for name, path, _target in self.deferred:  # every link in place: chains resolve inside
            self.member = name
            self._check_link(path)

    def _make_link(self, path: Path, target: str) -> None:
        """Create one link, never through another link (every folder on the way is real)."""
        folder = self.root
        for name in path.relative_to(self.root).parts[:-1]:
            folder = folder / name
            try:
                os.mkdir(folder)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):  # a link (or file) on the way
                    raise self.refuse("lies under a link or file") from None
        try:
            os.symlink(target, path)
        except FileExistsError:
            raise self.refuse("is a link where the archive also holds a file or folder") from None
        self._check_link(path)

    def _check_link(self, path: Path) -> None:
        try:
            link_target_inside(self.root, path)
        except ArchiveError:
            raise self.refuse(f"links to {os.readlink(path)!r}, out of the folder") from None


def _extract_tar(ex: _Extraction, file: IO[bytes], compression: str) -> None:
    # Read in order, but not in stream mode ("r|"): gzip's CRC is then checked at the end.
    with tarfile.open(fileobj=file, mode=f"r:{compression}", tarinfo=CheckedTarInfo) as tf:
        while (member := tf.next()) is not None:
            tf.members.clear()  # a stream needs no index: keep memory flat on many members
            parts = ex.place(member.name, is_dir=member.isdir())
            ex.charge(member.name, member.size if member.isfile() else 0)
            if member.isdir():
                ex.make_dir(parts)
            elif member.issym():
                ex.add_link(parts, member.linkname)
            elif member.islnk():
                raise ex.refuse(f"is a hard link to {member.linkname!r}")
            elif not member.isfile():
                raise ex.refuse("is a device or special file")
            else:
                source = tf.extractfile(member)
                assert source is not None
                mode = (member.mode & 0o755) | 0o600
                ex.write_file(parts, source, member.size, mode, member.mtime)
        # What follows the first end-of-archive block must be zeros (its padding): a header
        # zeroed by corruption would otherwise end the archive early, silently. Reading to
        # the end also makes gzip check its CRC; the padding counts against the size limit.
        padding = 0
        while block := tf.fileobj.read(1 << 16):
            if block.strip(b"\0"):
                raise CorruptTar("data follows an end-of-archive block (a zeroed header?)")
            padding += len(block)
            allowed = max(ex.limit, _MAX_PADDING)
            if padding > allowed:
                raise CorruptTar(f"more than {allowed} bytes of padding after its end block")


def _zip_kind(info: zipfile.ZipInfo) -> str:
    kind = stat.S_IFMT(info.external_attr >> 16)
    if info.is_dir():
        return "dir"
    if kind == stat.S_IFLNK:
        return "link"
    return "file" if kind in (0, stat.S_IFREG, stat.S_IFDIR) else "special"


def _extract_zip(ex: _Extraction, file: IO[bytes]) -> None:
    with zipfile.ZipFile(file) as zf:
        plan: list[tuple[zipfile.ZipInfo, str, tuple[str, ...]]] = []
        for info in zf.infolist():  # every member checked before anything is written
            kind = _zip_kind(info)
            parts = ex.place(info.filename, is_dir=kind == "dir")
            if kind == "special":
                raise ex.refuse("is a device or special file")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{ex.archive}: member {info.filename!r} is encrypted")
            if kind == "link" and not ex.links:
                raise ex.refuse("is a symbolic link")
            if kind == "link" and info.file_size > _MAX_LINK_TEXT:
                raise ex.refuse(f"is a symbolic link of {info.file_size} bytes")
            ex.charge(info.filename, info.file_size if kind == "file" else 0)
            plan.append((info, kind, parts))
        for info, kind, parts in plan:
            ex.member = info.filename
            if kind == "dir":
                ex.make_dir(parts)
            elif kind == "link":
                ex.add_link(parts, zf.read(info).decode("utf-8", "surrogateescape"))
            else:
                with zf.open(info) as source:
                    ex.write_file(parts, source, info.file_size, 0o666, None)


def _extract_once(
    archive: Path, root: Path, *, strip: str | None, links: bool, limit: int
) -> dict[str, int]:
    """Extract into the fresh, empty folder ``root``; the caller removes it on error."""
    ex = _Extraction(archive, root, strip=strip, links=links, limit=limit)
    try:
        with open(archive, "rb") as file:
            kind = archive_kind(file)
            if kind == "zip":
                _extract_zip(ex, file)
            else:
                _extract_tar(ex, file, kind)
        ex.finish_links()
    except (FileExistsError, NotADirectoryError) as exc:
        raise ArchiveError(
            f"{archive}: member {ex.member!r} appears twice, or both as a file and a folder "
            f"(names may differ only in letter case on this file system); refused ({exc})"
        ) from exc
    except CorruptTar as exc:
        raise ArchiveError(f"{archive}: cannot extract after member {ex.member!r}: {exc}") from exc
    except ArchiveError:  # a refusal of ours (a ValueError: not to be taken for corruption)
        raise
    except _CORRUPT as exc:
        raise ArchiveError(f"{archive}: cannot extract ({exc})") from exc
    except OSError as exc:
        raise ArchiveError(f"{archive}: member {ex.member!r} cannot be extracted ({exc})") from exc
    compare_manifest(
        archive,
        ex.written,
        folder_manifest(root, links=links),
        problem="extracted files do not match the archive",
    )
    return ex.written


@contextlib.contextmanager
def staged_extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    strip: str | None = None,
    links: bool = False,
    max_bytes: int | None = None,
    unwrap_if: Callable[[str], bool] | None = None,
) -> Iterator[Path]:
    """Extract ``archive`` into a private folder beside ``dest``, checked; yield that folder.

    The caller moves what it wants out of the folder (one :func:`os.rename` to ``dest``);
    whatever is left there, and everything on any error, is removed on exit. ``dest``'s folder
    must exist. See the module docstring for the checks.

    Parameters
    ----------
    archive
        A zip or tar (plain, gz, bz2 or xz) file.
    dest
        The destination; the private folder is ``.<dest name>.restoring-<8 hex>`` beside it.
    strip
        If every member sits under this top-level folder, drop it (its content lands in the
        yielded folder); otherwise extract the members as they are.
    links
        Restore symbolic links that stay inside the folder (else refuse every link).
    max_bytes
        Most bytes the members may declare, each also counted 512 bytes for its header
        (default: :func:`default_max_bytes` of the archive's size).
    unwrap_if
        When ``strip`` did not apply and the folder holds one folder (not a link) whose name
        passes this test, yield that folder instead, once every link in it is checked to stay
        inside it (links were checked against the private folder, one level up).

    Raises
    ------
    FileNotFoundError
        If the archive is missing.
    UnsafeArchiveMemberError
        Naming the first member that escapes, is a hard link, a device or a refused link.
    ArchiveError
        If the archive is corrupt or truncated, exceeds ``max_bytes`` or the free space, a
        member appears twice, or writing fails (the ``OSError`` is chained).
    """
    arc = Path(archive)
    destination = Path(dest)
    limit = default_max_bytes(os.stat(arc).st_size) if max_bytes is None else max_bytes
    tmp: Path | None = None  # only a folder this call created is ever removed
    try:
        tmp = _new_private_folder(arc, destination)
        try:
            _extract_once(arc, tmp, strip=strip, links=links, limit=limit)
            stripped = strip is not None
        except _NotUnderOneFolder:
            shutil.rmtree(tmp)
            tmp = None
            tmp = _new_private_folder(arc, destination)
            _extract_once(arc, tmp, strip=None, links=links, limit=limit)
            stripped = False
        root = tmp
        if unwrap_if is not None and not stripped:
            children = list(tmp.iterdir())
            only = children[0] if len(children) == 1 else None
            if only and not only.is_symlink() and only.is_dir() and unwrap_if(only.name):
                walk_folder(only, links=links)  # ArchiveError for a link pointing out of it
                root = only
        yield root
    finally:
        if tmp is not None and os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _new_private_folder(archive: Path, destination: Path) -> Path:
    """Create ``.<destination name>.restoring-<8 hex>`` beside ``destination``, new."""
    tmp = destination.parent / f".{destination.name}.restoring-{secrets.token_hex(4)}"
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise ArchiveError(f"{archive}: cannot create the folder to extract into ({exc})") from exc
    return tmp


def safe_extract(
    archive_path: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    *,
    links: bool = False,
    max_bytes: int | None = None,
) -> Path:
    """Extract a zip or tar archive into ``dest_dir`` after checking every member.

    The members are extracted into a private folder beside ``dest_dir``, checked, compared
    with the archive's member list and moved into place with one rename: ``dest_dir`` appears
    complete or not at all. It must not exist, or be an empty folder (it is never merged into).
    Files and folders follow the umask.

    Parameters
    ----------
    links
        Restore symbolic links that stay inside the folder (default: refuse every link).
    max_bytes
        Most bytes the members may declare (default: :func:`default_max_bytes`).

    Raises
    ------
    FileNotFoundError
        If the archive is missing.
    FileExistsError
        If ``dest_dir`` exists and is not an empty folder.
    UnsafeArchiveMemberError
        Naming the first member that is absolute, climbs out with ``..``, is a link or a device.
    ArchiveError
        If the archive is unreadable or truncated, too large, or writing fails.
    """
    archive = Path(archive_path)
    dest = Path(dest_dir)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: archive to extract does not exist or is not a file")
    if os.path.lexists(dest) and (dest.is_symlink() or not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest}: exists and is not an empty folder; never merged into")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"{archive}: cannot create {dest.parent} ({exc})") from exc
    with staged_extract(archive, dest, links=links, max_bytes=max_bytes) as tmp:
        if os.name == "nt" and dest.is_dir():  # pragma: no cover - POSIX renames onto it
            dest.rmdir()
        try:
            os.rename(tmp, dest)  # onto nothing, or onto an empty folder
        except OSError as exc:
            if os.path.lexists(dest):
                raise FileExistsError(f"{dest}: appeared while extracting {archive}") from exc
            raise ArchiveError(f"{archive}: cannot move the files to {dest} ({exc})") from exc
    fsync_dir(dest)
    fsync_dir(dest.parent)
    return dest
