"""Archive one run folder into one file, and restore it, without ever losing data.

Archiving packs the folder into ``<folder>.tar.gz`` (or ``.tar``, ``.tar.xz``, ``.tar.bz2``)
beside it: the archive is written to a temporary file in the same folder, read back and checked
(every member's name and size against the source folder), flushed to disk and renamed into place;
only then is the source removed. Restoring goes through the one checked extractor,
:func:`labsession.core.archive.staged_extract`: it streams the archive once into a private
temporary folder beside the destination, refusing (naming the member) absolute paths, ``..``,
hard links, links that point out of the folder, device files, duplicates, and archives whose
declared sizes exceed ``max_bytes``; it compares the extracted files with the archive's members
and sizes, and the folder is renamed into place; only then, if asked, is the archive removed.
Symbolic links that stay inside the run folder are archived and restored as links (created after
every file is written, so no write goes through one). File modes are restored without set-id bits
or group/other write permission, and restricted further by the umask, as every file and folder
created here is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from labsession.core.archive import (
    TAR_FORMATS,
    FolderEntry,
    compare_folders,
    pack_tar,
    remove_packed,
    staged_extract,
    walk_folder,
)
from labsession.core.atomic import flush_trees, fsync_dir, rename_no_replace
from labsession.errors import ArchiveError
from labsession.runs._hold import ArchiveHold, same_file, still_at
from labsession.runs._ids import is_run_id

__all__ = [
    "ARCHIVE_FORMATS",
    "archive_path_for",
    "archive_session_dir",
    "check_archived",
    "check_restored",
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
        remove_source(src, target, entries, checked=os.stat(target))
    return target


def pack_verified(
    src: Path, *, fmt: str, compresslevel: int, fsync: bool
) -> tuple[Path, list[FolderEntry]]:
    """Write ``src``'s archive beside it (temp file, read back, rename); keep ``src``.

    Returns the archive and the listing it was packed from (for :func:`remove_source`). With
    ``fsync=False`` the caller must flush the archive
    (:func:`labsession.core.atomic.flush_files`) before removing
    the source.
    """
    target = archive_path_for(src, fmt)
    if not src.exists():
        raise FileNotFoundError(f"{src}: run folder to archive does not exist")
    if not src.is_dir():
        raise NotADirectoryError(f"{src}: not a folder; only run folders can be archived")
    if target.exists():
        raise FileExistsError(f"{target}: archive already exists; refusing to overwrite it")
    entries = _records_first(walk_folder(src, links=True, settled=True))  # see remove_packed
    pack_tar(src, target, compresslevel=compresslevel, fsync=fsync, entries=entries)
    return target, entries


def _records_first(entries: list[FolderEntry]) -> list[FolderEntry]:
    """The listing with ``CONFIGS/`` (the run's record) first, each folder still before what
    it holds: readers find ``CONFIG.json`` and ``rng_checksums.json`` at the start of the
    archive however many files sort before them (``runs list``, ``rngg.verify``)."""
    records = [e for e in entries if e[0] == "CONFIGS" or e[0].startswith("CONFIGS/")]
    return records + [e for e in entries if e[0] != "CONFIGS" and not e[0].startswith("CONFIGS/")]


@contextlib.contextmanager
def _extracted_beside(arc: Path, dest: Path, *, max_bytes: int | None) -> Iterator[Path]:
    """Extract ``arc`` as a restore does, into a private folder beside ``dest``; yield it.

    The folder is removed on exit unless the caller moved it away.
    """
    # Archives written here (and by the established tools) hold one folder named like the run:
    # its content is extracted straight into the temporary folder, which is then renamed.
    top = strip_archive_suffix(arc.name) if arc.name.endswith(_READ_SUFFIXES) else None
    # One run folder under another archive name: its content (only when the archive's name did
    # not strip already, so a run holding one run-named folder keeps its layout).
    with staged_extract(
        arc, dest, strip=top, links=True, max_bytes=max_bytes, unwrap_if=is_run_id
    ) as root:
        yield root


def check_archived(src: Path, *, fmt: str) -> tuple[Path, list[FolderEntry], os.stat_result]:
    """Check that the archive of ``src``, which exists already, gives back all ``src`` holds.

    For a folder whose archiving stopped after its archive was renamed into place (a killed
    process, a crash) but before the folder was wholly removed: the archive is restored for
    real, with every check a restore makes, into a private folder beside ``src``, and every
    folder, file and link left in ``src`` compared with what it gave, byte for byte. Returns
    the archive, the listing and the archive's status as checked, for :func:`remove_source`
    once the archive is flushed to disk.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If ``src`` is missing or not a folder.
    ArchiveError
        If restoring the archive fails (corrupt, a member refused, no space for the trial) or
        does not give back what ``src`` holds (written or added since it was packed, another
        archive of the same name, another layout); nothing is changed then.
    """
    target = archive_path_for(src, fmt)
    if not src.is_dir():
        if not src.exists():
            raise FileNotFoundError(f"{src}: run folder to archive does not exist")
        raise NotADirectoryError(f"{src}: not a folder; only run folders can be archived")
    entries = walk_folder(src, links=True, settled=True)
    checked = os.stat(target)
    # No size limit but the free space: the folder held those bytes (a restore of such an
    # archive needs max_bytes, which its error says).
    with _extracted_beside(target, src, max_bytes=sys.maxsize) as restored:
        differs = compare_folders(src, entries, restored).changed
    if differs:
        raise ArchiveError(
            f"{target}: exists, but restoring it does not give back {len(differs)} path(s) "
            f"{src} holds (written or added since, or another archive): {differs[:5]}; both kept"
        )
    return target, entries, checked


def check_restored(archive: Path, dest: Path, *, max_bytes: int | None = None) -> None:
    """Check that ``dest``, which exists already, is exactly what restoring ``archive`` gives.

    For a restore that stopped after the folder was renamed into place but before its archive
    was removed: the archive is restored again into a private folder beside ``dest`` and the
    two compared, path by path and byte for byte, with each file's owner permission bits and
    modification time (which only the archive would keep otherwise; group and other bits follow
    the umask of each restore, and a time the system could not set is not compared).

    Raises
    ------
    FileExistsError
        If ``dest`` differs from what the archive gives (it is another folder: both are kept).
    ArchiveError
        If restoring the archive fails, or ``dest`` holds a special file or a link out.
    """
    entries = walk_folder(dest, links=True)
    with _extracted_beside(archive, dest, max_bytes=max_bytes) as restored:
        differs = compare_folders(dest, entries, restored, file_metadata=True)
    if not differs.identical:
        raise FileExistsError(
            f"{dest}: exists and differs from what {archive} gives ({len(differs.changed)} "
            f"path(s) it does not give, {len(differs.missing)} it gives missing); both kept"
        )


def remove_source(
    src: Path, archive: Path, entries: list[FolderEntry], *, checked: os.stat_result
) -> None:
    """Remove what ``archive`` holds of run folder ``src`` once the archive is on disk.

    Only the packed files are removed: one written to or added since packing stays, with a
    warning (a run still writing its logs loses nothing). A failure to remove only warns.
    The archive is locked meanwhile (:class:`~labsession.runs._hold.ArchiveHold`) and must
    still be the file ``checked`` (its status when packed or checked).

    Raises
    ------
    ArchiveError
        If the archive was removed or replaced since (by a restore running at once), or another
        call holds its lock: nothing is removed.
    """
    with ArchiveHold(archive) as held:
        if held is None or not same_file(held, checked):
            raise ArchiveError(
                f"{archive}: removed or replaced since it was checked (a restore running at "
                f"the same time?); {src} kept"
            )
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


def restore_session_archive(
    archive_path: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str] | None = None,
    remove_archive: bool = False,
    *,
    max_bytes: int | None = None,
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
    max_bytes
        Most bytes the members may declare (each also counted 512 bytes for its header);
        default :func:`labsession.core.archive.default_max_bytes`: 100 times the archive's
        size, at least 64 MiB. Checked at each member's header, before its data is written.

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
        If the archive is corrupt, declares more than ``max_bytes`` or the free space, a member
        appears twice, writing fails (over-long name, permission denied, disk full: the
        ``OSError`` is chained), or the extracted files differ from its members; or, with
        ``remove_archive``, another call holds the archive (archiving or restoring this run
        at once) or removed it meanwhile. Nothing is left behind.
    """
    arc = Path(archive_path)
    if not arc.is_file():
        raise FileNotFoundError(f"{arc}: archive to restore does not exist or is not a file")
    dest = Path(dest_dir) if dest_dir is not None else arc.parent / strip_archive_suffix(arc.name)
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest}: destination exists; refusing to overwrite it")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"{arc}: cannot create {dest.parent} ({exc})") from exc
    # The archive to remove is held from before it is read until it is gone: an archiving call
    # at once never removes the folder meanwhile, nor is another archive of the run (written
    # meanwhile) ever taken for this one.
    hold = ArchiveHold(arc) if remove_archive else contextlib.nullcontext()
    with hold as held, _extracted_beside(arc, dest, max_bytes=max_bytes) as root:
        try:
            if remove_archive:
                flush_trees([root])
        except OSError as exc:
            raise ArchiveError(f"{arc}: cannot flush the restored files to disk ({exc})") from exc
        if remove_archive and (held is None or not still_at(arc, held)):
            raise ArchiveError(f"{arc}: removed or replaced while being restored")
        try:
            rename_no_replace(root, dest)  # never onto a folder that appeared meanwhile
        except OSError as exc:
            if os.path.lexists(dest):
                raise FileExistsError(f"{dest}: appeared while restoring {arc}") from exc
            raise ArchiveError(f"{arc}: cannot move the restored files to {dest} ({exc})") from exc
        if remove_archive:
            try:
                fsync_dir(dest.parent)
                arc.unlink()
                fsync_dir(arc.parent)
            except OSError as exc:
                raise ArchiveError(
                    f"{arc}: restored to {dest}, but the archive could not be removed ({exc})"
                ) from exc
    logger.debug("restored %s -> %s", arc, dest)
    return dest
