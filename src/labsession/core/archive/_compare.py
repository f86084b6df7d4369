"""Compare a folder with another (a trial restore of its archive) byte for byte.

An archive that was renamed into place but whose folder was not (or not wholly) removed, or a
folder restored whose archive was not removed, is finished only once the archive is known to
give the folder back: the archive is restored for real into a private folder (by the one
checked extractor, with every check a restore makes) and :func:`compare_folders` compares the
two, path by path and byte for byte. Checking the archive's members instead would have to copy
each of the extractor's decisions (what it refuses, which top folder it strips, how it tells a
tar from a zip) and would drift from it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from labsession.core.archive._manifest import FolderEntry, walk_folder
from labsession.core.archive._tar import _ListedFiles
from labsession.core.paths import read_at_most
from labsession.errors import ArchiveError

__all__ = ["FolderDifference", "compare_folders"]

_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class FolderDifference:
    """How a folder differs from another (relative POSIX paths, sorted).

    Attributes
    ----------
    changed
        Paths of the folder the other does not hold as they are: another content, size, kind
        or link target, absent there, or changed since the listing.
    missing
        Paths of the other folder that the folder lacks.
    """

    changed: list[str]
    missing: list[str]

    @property
    def identical(self) -> bool:
        """Whether the two folders hold the same paths, byte for byte."""
        return not self.changed and not self.missing


def _same_bytes(
    mine: _ListedFiles,
    theirs: _ListedFiles,
    rel: str,
    listed: os.stat_result,
    other: os.stat_result,
) -> bool:
    try:
        with mine.open(rel, listed) as fd, theirs.open(rel, other) as other_fd:
            while True:  # blocks of _BLOCK bytes (read_at_most reads one more than its limit)
                block = read_at_most(fd, _BLOCK - 1)
                if block != read_at_most(other_fd, _BLOCK - 1):
                    return False
                if not block:
                    return True
    except (ArchiveError, OSError):  # replaced since the listing, or unreadable: not the same
        return False


def compare_folders(
    folder: str | os.PathLike[str],
    entries: list[FolderEntry],
    other: str | os.PathLike[str],
    *,
    file_metadata: bool = False,
) -> FolderDifference:
    """Compare ``folder`` with ``other``, path by path, byte for byte.

    Parameters
    ----------
    folder
        The folder, as listed in ``entries``.
    entries
        ``folder``'s :func:`~labsession.core.archive.walk_folder` listing (``links=True``, and
        ``settled=True`` when the result decides a removal). Files are opened as listed, never
        through a link; a file replaced since counts as changed.
    other
        The folder to compare with (listed here, links kept as links).
    file_metadata
        Also compare each file's owner permission bits and modification time (ns), for two
        folders extracted from one archive (a packed folder's times are finer than a tar's;
        the group and other bits follow each extraction's umask). A time in ``other`` equal
        to its status change time was never set (one the system cannot set, as a year
        beyond 2262): not compared.

    Returns
    -------
    FolderDifference
        Folders, files and link targets are compared; modes and times only as asked.

    Raises
    ------
    ArchiveError
        If ``other`` holds a special file or a link pointing out of it.
    """
    other_entries = walk_folder(Path(other), links=True)
    theirs = {rel: (st, link) for rel, st, link in other_entries}
    changed: list[str] = []
    with (
        _ListedFiles(Path(folder), entries, follow_top=False) as mine,
        _ListedFiles(Path(other), other_entries, follow_top=False) as their_files,
    ):
        for rel, st, link in entries:
            if rel not in theirs:
                changed.append(rel)
                continue
            other_st, other_link = theirs[rel]
            same_kind = stat.S_IFMT(st.st_mode) == stat.S_IFMT(other_st.st_mode)
            same = same_kind and link == other_link
            if same and stat.S_ISREG(st.st_mode):
                same = st.st_size == other_st.st_size and _same_bytes(
                    mine, their_files, rel, st, other_st
                )
                if file_metadata:
                    same = same and st.st_mode & stat.S_IRWXU == other_st.st_mode & stat.S_IRWXU
                    if other_st.st_mtime_ns != other_st.st_ctime_ns:
                        same = same and st.st_mtime_ns == other_st.st_mtime_ns
            if not same:
                changed.append(rel)
    listed = {rel for rel, _st, _link in entries}
    return FolderDifference(sorted(changed), sorted(set(theirs) - listed))
