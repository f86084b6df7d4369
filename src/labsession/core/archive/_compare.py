"""Compare a tar archive with a folder byte for byte (to finish an interrupted archive or restore).

An archive that was renamed into place but whose folder was not (or not wholly) removed, or a
folder restored whose archive was not removed, is finished only once the two are known to hold
the same bytes: :func:`compare_tar_folder` reads the archive once, to its end (its checksum
checked), and compares every member with the folder's file of that name.
"""

from __future__ import annotations

import lzma
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from labsession.core.archive._manifest import FolderEntry
from labsession.core.archive._read import CheckedTarInfo, CorruptTar
from labsession.core.archive._tar import _ListedFiles
from labsession.errors import ArchiveError

__all__ = ["FolderDifference", "compare_tar_folder"]

_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class FolderDifference:
    """How a folder differs from a tar archive (relative POSIX paths, sorted).

    Attributes
    ----------
    changed
        Listed paths the archive does not hold as they are: another content, size, kind or link
        target, not in the archive at all, or changed since the listing.
    missing
        Members of the archive (under its top folder) that the folder lacks.
    """

    changed: list[str]
    missing: list[str]

    @property
    def identical(self) -> bool:
        """Whether the folder holds exactly the archive's members, byte for byte."""
        return not self.changed and not self.missing


def _same_bytes(
    tf: tarfile.TarFile,
    member: tarfile.TarInfo,
    folders: _ListedFiles,
    rel: str,
    listed: os.stat_result,
) -> bool:
    data = tf.extractfile(member)
    assert data is not None
    try:
        with folders.open(rel, listed) as fd:
            while block := data.read(_BLOCK):
                got = b""
                while len(got) < len(block):
                    more = os.read(fd, len(block) - len(got))
                    if not more:
                        return False
                    got += more
                if got != block:
                    return False
            return os.read(fd, 1) == b""
    except (ArchiveError, OSError):  # replaced since the listing, or unreadable: not the same
        return False


def compare_tar_folder(
    tar_path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    entries: list[FolderEntry],
    *,
    top: str,
) -> FolderDifference:
    """Compare tar archive ``tar_path`` with ``folder``, member by member, byte for byte.

    Parameters
    ----------
    tar_path
        The archive (any compression ``tarfile`` reads). Members are read strictly: a corrupt
        header is an error, not the end of the archive.
    folder
        The folder, as listed in ``entries``.
    entries
        ``folder``'s :func:`~labsession.core.archive.walk_folder` listing (``links=True``, and
        ``settled=True`` when the result decides a removal). Files are opened as listed, never
        through a link; a file replaced since counts as changed.
    top
        The folder the members sit under in the archive (``""``: at its root). Members outside
        it count as missing.

    Returns
    -------
    FolderDifference
        Folders count as held when the archive holds them or anything under them.

    Raises
    ------
    ArchiveError
        If the archive is unreadable, corrupt or truncated (its compression's checksum is
        checked at its end).
    """
    listed = {rel: (st, link) for rel, st, link in entries}
    prefix = f"{top}/" if top else ""
    held: set[str] = set()
    changed: set[str] = set()
    missing: list[str] = []
    try:
        with (
            tarfile.open(tar_path, "r:*", tarinfo=CheckedTarInfo) as tf,
            _ListedFiles(Path(folder), entries, follow_top=False) as folders,
        ):
            for member in tf:
                name = member.name.rstrip("/")
                if name in (top, "."):
                    continue
                if not name.startswith(prefix):
                    missing.append(name)
                    continue
                rel = name[len(prefix) :]
                if rel in held:  # a duplicate: which one a reader keeps is not certain
                    changed.add(rel)
                    continue
                held.add(rel)
                if rel not in listed:
                    missing.append(rel)
                    continue
                st, link = listed[rel]
                if member.isdir():
                    same = stat.S_ISDIR(st.st_mode)
                elif member.issym():
                    same = link is not None and link == member.linkname
                elif member.isfile():
                    same = (
                        link is None
                        and stat.S_ISREG(st.st_mode)
                        and st.st_size == member.size
                        and _same_bytes(tf, member, folders, rel, st)
                    )
                else:
                    same = False
                if not same:
                    changed.add(rel)
            assert tf.fileobj is not None
            while tf.fileobj.read(_BLOCK):  # to the end, where the checksum is checked
                pass
    except (CorruptTar, tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise ArchiveError(f"{tar_path}: not a readable tar archive ({exc})") from exc
    above: set[str] = set()  # every folder holding a member
    for rel in held:
        while "/" in rel:
            rel = rel.rpartition("/")[0]
            if rel in above:
                break
            above.add(rel)
    for rel, (st, _link) in listed.items():
        if rel not in held and not (stat.S_ISDIR(st.st_mode) and rel in above):
            changed.add(rel)
    return FolderDifference(sorted(changed), sorted(missing))
