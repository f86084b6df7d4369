"""Archive one run folder into one file, and restore it, without ever losing data.

Archiving packs the folder into ``<folder>.tar.gz`` (or ``.tar``, ``.tar.xz``, ``.tar.bz2``)
beside it: the archive is written to a temporary file in the same folder, read back and checked
(every member's name and size against the source folder), flushed to disk and renamed into place;
only then is the source removed. Restoring extracts into a temporary folder beside the destination
after checking every member (absolute paths, ``..``, hard links, links that point out of the
folder and device files are refused, naming the member), compares the extracted files with the
archive's member list and sizes, and renames the folder into place; only then, if asked, is the
archive removed. Extraction reads the archive once, as a stream, into a private temporary folder
that is removed if any member is refused. Symbolic links that stay inside the run folder are
archived and restored as links (created after every file is written, so no write goes through
one); file modes are restored without set-id bits or group/other write permission.
"""

from __future__ import annotations

import logging
import lzma
import os
import secrets
import shutil
import stat
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from labsession.core.archive import (
    TAR_FORMATS,
    FolderEntry,
    check_link_text,
    check_member_name,
    compare_manifest,
    folder_manifest,
    link_target_inside,
    pack_tar,
    remove_packed,
    walk_folder,
)
from labsession.core.atomic import fsync_dir
from labsession.errors import ArchiveError, UnsafeArchiveMemberError
from labsession.runs._ids import is_run_id

__all__ = [
    "ARCHIVE_FORMATS",
    "archive_path_for",
    "archive_session_dir",
    "flush_archives",
    "flush_files",
    "flush_trees",
    "pack_verified",
    "remove_source",
    "restore_session_archive",
    "strip_archive_suffix",
]

logger = logging.getLogger(__name__)

#: The formats :func:`archive_session_dir` writes (``tgz`` is read but not written).
ARCHIVE_FORMATS = tuple(f for f in TAR_FORMATS if f != "tgz")
_READ_SUFFIXES = tuple(sorted(("." + f for f in TAR_FORMATS), key=len, reverse=True))


def _check_format(fmt: str) -> str:
    if fmt not in ARCHIVE_FORMATS:
        raise ValueError(f"unknown archive format {fmt!r}; expected one of {ARCHIVE_FORMATS}")
    return fmt


def archive_path_for(src_dir: str | os.PathLike[str], fmt: str = "tar.gz") -> Path:
    """Return where :func:`archive_session_dir` puts the archive of ``src_dir``."""
    src = Path(src_dir)
    return src.parent / f"{src.name}.{_check_format(fmt)}"


def strip_archive_suffix(name: str) -> str:
    """Return an archive file name without its tar suffix (``"x.tar.gz"`` -> ``"x"``).

    Raises
    ------
    ArchiveError
        If the name has no tar suffix.
    """
    for suffix in _READ_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    raise ArchiveError(f"{name}: not a run archive (expected one of {list(_READ_SUFFIXES)})")


def archive_session_dir(
    src_dir: str | os.PathLike[str],
    format: str = "tar.gz",
    remove_src: bool = True,
    compresslevel: int = 1,
) -> Path:
    """Pack a run folder into one verified archive beside it, then (optionally) remove the folder.

    Parameters
    ----------
    src_dir
        The run folder, e.g. ``script_out/FINISHED_SUCCESS/2026Y-05M-17D-14h23m05s_a1B2``.
    format
        ``"tar.gz"`` (default), ``"tar"``, ``"tar.bz2"`` or ``"tar.xz"``.
    remove_src
        Remove the folder once the archive is verified, on disk and renamed into place.
    compresslevel
        gzip/bzip2 level; 1 is fast and already shrinks text logs several-fold.

    Returns
    -------
    Path
        The archive, ``<src_dir>.<format>``; its members sit under ``<folder name>/``.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If ``src_dir`` is missing or not a folder.
    FileExistsError
        If the archive already exists (it is never overwritten).
    ArchiveError
        If the folder holds a special file or a link that points out of it, a file was replaced
        (or swapped for a link) or shrank between listing and packing, or the archive does not
        read back as the folder's exact member list and sizes; the source is then untouched.
    """
    src = Path(src_dir)
    target, entries = pack_verified(src, fmt=format, compresslevel=compresslevel, fsync=remove_src)
    if remove_src:
        remove_source(src, target, entries)
    return target


def pack_verified(
    src: Path, *, fmt: str, compresslevel: int, fsync: bool
) -> tuple[Path, list[FolderEntry]]:
    """Write ``src``'s archive beside it (temp file, read back, rename); keep ``src``.

    Returns the archive and the listing it was packed from (for :func:`remove_source`). With
    ``fsync=False`` the caller must flush the archive (:func:`flush_archives`) before removing
    the source.
    """
    target = archive_path_for(src, fmt)
    if not src.exists():
        raise FileNotFoundError(f"{src}: run folder to archive does not exist")
    if not src.is_dir():
        raise NotADirectoryError(f"{src}: not a folder; only run folders can be archived")
    if target.exists():
        raise FileExistsError(f"{target}: archive already exists; refusing to overwrite it")
    entries = walk_folder(src, links=True)
    pack_tar(src, target, compresslevel=compresslevel, fsync=fsync, entries=entries)
    return target, entries


def _fsync_file(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flush_files(paths: list[Path]) -> None:
    """Flush files and their folders to disk, many at once.

    The fsync calls run in a few threads: the file system then commits them together (one
    journal flush for many files), several times faster than one after another.
    """
    if not paths:
        return
    if len(paths) == 1:
        _fsync_file(paths[0])
    else:
        with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
            list(pool.map(_fsync_file, paths))
    for folder in sorted({p.parent for p in paths}):
        fsync_dir(folder)


def flush_archives(archives: list[Path]) -> None:
    """Flush archives written with ``fsync=False`` (and their folders) to disk in one batch."""
    flush_files(archives)


def remove_source(src: Path, archive: Path, entries: list[FolderEntry]) -> None:
    """Remove what ``archive`` holds of run folder ``src`` once the archive is on disk.

    Only the packed files are removed: one written to or added since packing stays, with a
    warning (a run still writing its logs loses nothing). A failure only warns.
    """
    try:
        kept = remove_packed(src, entries)
    except OSError as exc:
        logger.warning("archived %s, but could not remove the folder: %s", archive, exc)
        return
    if kept and kept != ["."]:
        changed = [k for k in kept if k != "."]
        logger.warning(
            "archived %s, but kept %d path(s) in %s changed or added since packing: %s",
            archive,
            len(changed),
            src,
            changed[:5],
        )
    logger.debug("archived %s -> %s", src, archive)


def _tree_files(root: Path) -> list[Path]:
    return [Path(folder, name) for folder, _dirs, files in os.walk(root) for name in files]


def flush_trees(roots: list[Path]) -> None:
    """Flush every file and folder under ``roots`` to disk (before removing their archives)."""
    flush_files([f for root in roots for f in _tree_files(root)])
    for root in roots:
        for folder, _dirs, _files in os.walk(root):
            fsync_dir(folder)


class _NotUnderOneFolder(Exception):
    """The archive's members do not all sit under the folder its first member named."""


def _extract_checked(archive: Path, dest: Path, *, strip: str | None) -> dict[str, int]:
    """Extract ``archive`` into the fresh private folder ``dest`` in one streaming pass.

    Every member is checked before anything is written for it: names must stay inside ``dest``
    (no absolute path, no ``..``); plain files and folders are written as they come, symbolic
    links only after the last file (so no link can redirect a write) and only if they resolve
    inside ``dest``; hard links and devices are refused. With ``strip``, members must sit under
    that top-level folder, which is dropped (the folder's content lands in ``dest``); otherwise
    :class:`_NotUnderOneFolder`. A refused member aborts the extraction; the caller removes
    ``dest``. Returns
    ``{relative path: bytes written}`` for the files.
    """
    written: dict[str, int] = {}
    links: list[tuple[tarfile.TarInfo, Path]] = []
    dest.mkdir()
    made = {dest}
    try:
        with tarfile.open(archive, "r|*") as tf:
            for member in tf:
                parts = check_member_name(member.name, archive=archive).parts
                if strip is not None:
                    if not parts or parts[0] != strip or (len(parts) == 1 and not member.isdir()):
                        raise _NotUnderOneFolder(member.name)
                    parts = parts[1:]
                if not parts:  # the archive's own root folder
                    continue
                target = dest.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    made.add(target)
                    continue
                if member.issym():
                    links.append((member, target))
                    continue
                if not member.isfile():
                    kind = "a hard link" if member.islnk() else "a device or special file"
                    raise UnsafeArchiveMemberError(
                        f"{archive}: member {member.name!r} is {kind}; refused"
                    )
                if target.parent not in made:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made.add(target.parent)
                source = tf.extractfile(member)
                assert source is not None
                written["/".join(parts)] = size = _write_new_file(target, source, member)
                if size != member.size:
                    raise ArchiveError(
                        f"{archive}: member {member.name!r} holds {size} bytes, header says "
                        f"{member.size}"
                    )
        for member, target in links:
            _make_link_inside(archive, member, target, dest)
        for member, target in links:  # with every link in place: chains resolve inside too
            _check_link(archive, member.name, target, dest)
    except FileExistsError as exc:
        raise ArchiveError(f"{archive}: member {exc.filename!r} appears twice; refused") from exc
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ArchiveError(f"{archive}: cannot extract ({exc})") from exc
    return written


_NEW_FILE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)
_BY_DESCRIPTOR = hasattr(os, "fchmod") and os.utime in os.supports_fd


def _write_new_file(target: Path, source: IO[bytes], member: tarfile.TarInfo) -> int:
    """Create ``target`` (never an existing path), copy ``source`` in, set mode and mtime.

    Works on the descriptor (no buffered file object, no path look-ups after the open): a run
    restores a few dozen small files, and on small files those calls are most of the cost.
    """
    fd = os.open(target, _NEW_FILE_FLAGS, 0o600)
    size = 0
    try:
        while block := source.read(1 << 20):
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
            size += len(block)
        mode, times = (member.mode & 0o755) | 0o600, (member.mtime, member.mtime)
        if _BY_DESCRIPTOR:
            os.fchmod(fd, mode)
            os.utime(fd, times)
    finally:
        os.close(fd)
    if not _BY_DESCRIPTOR:  # Windows: by path, once the file is closed
        os.chmod(target, mode)
        os.utime(target, times)
    return size


def _make_link_inside(archive: Path, member: tarfile.TarInfo, target: Path, root: Path) -> None:
    """Create link member ``target`` in ``root``, never through another link.

    The link's target must pass :func:`~labsession.core.archive.check_link_text` (relative,
    climbing with leading ``..`` only), and every folder on the way to the link must be a real
    folder inside ``root``. Each link is checked here by :func:`_check_link`, and again once
    all links are in place.
    """
    linkname = member.linkname
    try:
        check_link_text(linkname)
    except ArchiveError as exc:
        raise UnsafeArchiveMemberError(
            f"{archive}: member {member.name!r}: {exc}; refused"
        ) from None
    folder = root
    for name in target.relative_to(root).parts[:-1]:
        folder = folder / name
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):  # a link (or file) on the way
                raise UnsafeArchiveMemberError(
                    f"{archive}: member {member.name!r} lies under a link or file; refused"
                ) from None
    try:
        os.symlink(linkname, target)
    except FileExistsError:
        raise UnsafeArchiveMemberError(
            f"{archive}: member {member.name!r} is a link where the archive also holds a file "
            "or folder; refused"
        ) from None
    _check_link(archive, member.name, target, root)


def _check_link(archive: Path, name: str, link: Path, root: Path) -> None:
    try:
        link_target_inside(root, link)
    except ArchiveError:
        raise UnsafeArchiveMemberError(
            f"{archive}: member {name!r} links to {os.readlink(link)!r}, out of the folder; refused"
        ) from None


def restore_session_archive(
    archive_path: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str] | None = None,
    remove_archive: bool = False,
) -> Path:
    """Extract a run archive back into a folder, checked and renamed into place atomically.

    Parameters
    ----------
    archive_path
        A ``.tar.gz`` (or other tar) archive, as :func:`archive_session_dir` or the established
        run tools write it (members under one top-level folder, or at the root).
    dest_dir
        The folder to create (default: the archive's path without its suffix).
    remove_archive
        Remove the archive after the restored files are verified and flushed to disk.

    Returns
    -------
    Path
        The restored folder.

    Raises
    ------
    FileNotFoundError
        If the archive is missing.
    FileExistsError
        If the destination exists (it is never merged into or overwritten).
    UnsafeArchiveMemberError
        If a member is absolute, climbs out with ``..``, links out of the folder, is a hard
        link or a device (named).
    ArchiveError
        If the archive is corrupt or the extracted files differ from its members.
    """
    arc = Path(archive_path)
    if not arc.is_file():
        raise FileNotFoundError(f"{arc}: archive to restore does not exist or is not a file")
    dest = Path(dest_dir) if dest_dir is not None else arc.parent / strip_archive_suffix(arc.name)
    if dest.exists():
        raise FileExistsError(f"{dest}: destination exists; refusing to overwrite it")
    if not dest.parent.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.restoring-{secrets.token_hex(4)}"
    # Archives written here (and by the established tools) hold one folder named like the run:
    # its content is extracted straight into the temporary folder, which is then renamed.
    top = strip_archive_suffix(arc.name) if arc.name.endswith(_READ_SUFFIXES) else None
    try:
        try:
            expected = _extract_checked(arc, tmp, strip=top)
        except _NotUnderOneFolder:  # members at the archive's root, or under another name
            shutil.rmtree(tmp)
            expected = _extract_checked(arc, tmp, strip=None)
        root = tmp
        children = list(tmp.iterdir())
        if len(children) == 1 and children[0].is_dir() and is_run_id(children[0].name):
            root = children[0]  # one run folder under another archive name: its content
            expected = {k.split("/", 1)[1]: v for k, v in expected.items()}
        compare_manifest(
            arc,
            expected,
            folder_manifest(root, links=True),
            problem="extracted files do not match the archive",
        )
        if remove_archive:
            flush_trees([root])
        os.rename(root, dest)
        if root is not tmp:
            tmp.rmdir()
        if remove_archive:
            fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if remove_archive:
        arc.unlink()
        fsync_dir(arc.parent)
    logger.debug("restored %s -> %s", arc, dest)
    return dest
