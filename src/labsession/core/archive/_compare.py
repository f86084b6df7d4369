"""Compare a tar archive with a folder byte for byte (to finish an interrupted archive or restore).

An archive that was renamed into place but whose folder was not (or not wholly) removed, or a
folder restored whose archive was not removed, is finished only once the two are known to hold
the same bytes: :func:`compare_tar_folder` reads the archive once, to its end (its checksum
checked), and compares every member with the folder's file of that name. It refuses what
restoring refuses (a member that escapes, a hard link, data after the end-of-archive block), so
a folder is never removed for an archive that cannot give it back.
"""

from __future__ import annotations

import lzma
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from labsession.core.archive._manifest import FolderEntry
from labsession.core.archive._names import check_link_text, check_member_name
from labsession.core.archive._read import CheckedTarInfo, CorruptTar
from labsession.core.archive._tar import _ListedFiles
from labsession.errors import ArchiveError, UnsafeArchiveMemberError

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
    outside
        Members of the archive outside its top folder (as the archive names them); restoring
        then keeps the archive's layout instead of stripping the top folder.
    """

    changed: list[str]
    missing: list[str]
    outside: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Whether the folder holds exactly the archive's members, byte for byte."""
        return not self.changed and not self.missing and not self.outside


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


def _checked_parts(tar_path: str | os.PathLike[str], member: tarfile.TarInfo) -> tuple[str, ...]:
    """The member's path parts, or the error restoring would refuse the member with."""
    parts = check_member_name(member.name, archive=tar_path).parts
    refusal = None
    if member.islnk():
        refusal = f"is a hard link to {member.linkname!r}"
    elif member.issym():
        try:
            check_link_text(member.linkname)
        except ArchiveError as exc:
            refusal = f"links to a refused target: {exc}"
    elif not (member.isfile() or member.isdir()):
        refusal = "is a device or special file"
    if refusal:
        raise UnsafeArchiveMemberError(f"{tar_path}: member {member.name!r} {refusal}; refused")
    return parts


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
        The folder the members sit under in the archive (``""``: at its root); a member named
        like it must be a folder. Members outside it are listed in ``outside``.

    Returns
    -------
    FolderDifference
        Folders count as held when the archive holds them or anything under them.

    Raises
    ------
    UnsafeArchiveMemberError
        For a member restoring refuses (see :func:`staged_extract`): a name that escapes, a
        hard link, a device, a link to an absolute or climbing target.
    ArchiveError
        If the archive is unreadable, corrupt or truncated (its compression's checksum is
        checked at its end), holds other than zeros after its end-of-archive block, or a
        member named like ``top`` (or ``.``) that is not a folder.
    """
    listed = {rel: (st, link) for rel, st, link in entries}
    held: set[str] = set()
    changed: set[str] = set()
    missing: list[str] = []
    outside: list[str] = []
    try:
        with (
            tarfile.open(tar_path, "r:*", tarinfo=CheckedTarInfo) as tf,
            _ListedFiles(Path(folder), entries, follow_top=False) as folders,
        ):
            while (member := tf.next()) is not None:
                tf.members.clear()  # no index is needed: memory stays flat on many members
                parts = _checked_parts(tar_path, member)
                if not parts or (top and parts == (top,)):
                    if not member.isdir():
                        raise ArchiveError(
                            f"{tar_path}: member {member.name!r} names the folder itself but "
                            "is not a folder"
                        )
                    continue
                if top and parts[0] != top:
                    outside.append(member.name)
                    continue
                rel = "/".join(parts[1:] if top else parts)
                if rel in held:  # a duplicate: restoring refuses it
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
                else:
                    same = (
                        link is None
                        and stat.S_ISREG(st.st_mode)
                        and st.st_size == member.size
                        and _same_bytes(tf, member, folders, rel, st)
                    )
                if not same:
                    changed.add(rel)
            # Only zeros may follow the first end-of-archive block, as restoring requires (a
            # zeroed header would otherwise hide the members after it); reading to the end
            # also checks the compression's checksum.
            assert tf.fileobj is not None
            while block := tf.fileobj.read(_BLOCK):
                if block.strip(b"\0"):
                    raise CorruptTar("data follows an end-of-archive block (a zeroed header?)")
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
    return FolderDifference(sorted(changed), sorted(missing), sorted(outside))
