"""Checks of archive member names and link targets, shared by packing and extraction."""

from __future__ import annotations

import itertools
import os
from pathlib import PurePosixPath

from labsession.errors import ArchiveError, UnsafeArchiveMemberError

__all__ = ["check_link_text", "check_member_name", "link_target_inside"]


def check_member_name(name: str, *, archive: str | os.PathLike[str] = "") -> PurePosixPath:
    """Return ``name`` as a relative POSIX path, or raise if it would escape the destination.

    Backslashes count as separators (archives written on Windows), so ``..\\x`` climbs too.

    Raises
    ------
    UnsafeArchiveMemberError
        For an empty name, a NUL byte, an absolute path, a drive letter or a ``..`` component.
    """
    where = f"{archive}: " if archive else ""
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    if not normalised:
        raise UnsafeArchiveMemberError(f"{where}a member has an empty name; refused")
    if "\x00" in name:
        raise UnsafeArchiveMemberError(f"{where}member {name!r} holds a NUL byte; refused")
    if normalised.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveMemberError(f"{where}member {name!r} has an absolute path; refused")
    if ".." in path.parts:
        raise UnsafeArchiveMemberError(
            f"{where}member {name!r} climbs out of the destination with '..'; refused"
        )
    return path


def _leading_climbs(parts: tuple[str, ...]) -> int:
    """How many ``..`` a link target's path ``parts`` start with."""
    return len(parts) - len(tuple(itertools.dropwhile(lambda part: part == "..", parts)))


def check_link_text(target: str) -> None:
    """Refuse a link target that is empty, absolute, or climbs (``..``) after a name.

    Leading ``..`` are fine (``../CONFIGS``); ``b/../x`` is not: if ``b`` is itself a link, the
    ``..`` climbs from wherever ``b`` points, which no check of the text alone can bound.

    Raises
    ------
    ArchiveError
        Naming the target and the reason.
    """
    normalised = target.replace("\\", "/")
    parts = PurePosixPath(normalised).parts
    leading = _leading_climbs(parts)
    drive = target[1:2] == ":" and target[:1].isalpha()
    if not target or normalised.startswith("/") or os.path.isabs(target) or drive:
        raise ArchiveError(f"link target {target!r} is empty or an absolute path")
    if "\x00" in target:
        raise ArchiveError(f"link target {target!r} holds a NUL byte")
    if ".." in parts[leading:]:
        raise ArchiveError(f"link target {target!r} climbs after a name")


def link_target_inside(root: str | os.PathLike[str], link: str | os.PathLike[str]) -> str:
    """The target of symbolic link ``link`` if it is relative and resolves inside ``root``.

    Raises
    ------
    ArchiveError
        If the target fails :func:`check_link_text`, climbs (``..``) above ``root`` even to come
        back in through its name, or resolves (following every link on the way) out of
        ``root``.
    """
    target = os.readlink(link)
    try:
        check_link_text(target)
    except ArchiveError as exc:
        raise ArchiveError(f"{link}: symbolic link refused: {exc}") from None
    # Climbing above the folder and back in through its own name ("../<folder>/x") resolves
    # inside here, but not once restored under another name: refused as pointing out.
    parent = os.path.relpath(os.path.dirname(os.path.abspath(link)), os.path.abspath(root))
    depth = 0 if parent == os.curdir else len(parent.split(os.sep))
    climbs = _leading_climbs(PurePosixPath(target.replace("\\", "/")).parts)
    real_root = os.path.realpath(root)
    resolved = os.path.realpath(link)
    if climbs > depth or os.path.commonpath([real_root, resolved]) != real_root:
        raise ArchiveError(
            f"{link}: symbolic link to {target!r} points out of {root}; only relative links "
            "that stay inside the folder can be archived"
        )
    return target
