"""A folder's listing and manifest, their comparison with an archive, removal of what was packed.

:func:`walk_folder` lists a folder once (without following links); packing works from that
listing, :func:`compare_manifest` checks an archive (or an extracted folder) against it, and
:func:`remove_packed` removes exactly the listed files that are still the very ones packed.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from labsession.core.archive._names import link_target_inside
from labsession.errors import ArchiveError

__all__ = [
    "BY_FOLDER",
    "FolderEntry",
    "ListedFolders",
    "compare_manifest",
    "folder_manifest",
    "identity",
    "remove_packed",
    "walk_folder",
]

#: One entry of :func:`walk_folder`: POSIX relative path, its lstat, link target or None.
FolderEntry = tuple[str, os.stat_result, str | None]

#: The coarsest step assumed between file timestamps where they have sub-second digits: Linux
#: stamps files from a clock that advances once per scheduler tick (1-10 ms).
_FINE_STEP_NS = 10_000_000
#: Where every timestamp listed is a whole second (FAT: 2 s steps).
_COARSE_STEP_NS = 2_000_000_000


def walk_folder(src: Path, *, links: bool = False, settled: bool = False) -> list[FolderEntry]:
    """Every folder, regular file (and with ``links`` inside link) under ``src``, sorted by path.

    Links are not followed. A descendant sorts after its folder, so the reversed list removes
    children first (:func:`remove_packed`).

    With ``settled``, returns only once the newest change listed (modification or status
    change) lies two timestamp steps in the past (at most ~20 ms after a fresh write, nothing
    for older files). A file rewritten after that gets later times, so :func:`remove_packed`
    keeps it even when its size is unchanged; one rewritten before it returns, within the step
    of its listed times, is rewritten before it is read, so what is packed is its new content.
    Without the wait, a same-size rewrite in the listed step would look unchanged and be removed
    after its old bytes were packed. (File systems whose clock runs ahead of this machine's,
    such as a skewed network share, get at most the two steps.)

    Raises
    ------
    ArchiveError
        On a special file, or a symbolic link (with ``links``: one that points out of ``src``).
    """
    entries: list[FolderEntry] = []
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
    if settled:
        _wait_past_timestamp_step(entries)
    return entries


def _wait_past_timestamp_step(entries: list[FolderEntry]) -> None:
    stamps = [t for _, st, _ in entries for t in (st.st_mtime_ns, st.st_ctime_ns)]
    if not stamps:
        return
    coarse = all(t % 1_000_000_000 == 0 for t in stamps)
    step = _COARSE_STEP_NS if coarse else _FINE_STEP_NS
    wait_ns = max(stamps) + 2 * step - time.time_ns()
    if wait_ns > 0:
        time.sleep(min(wait_ns, 2 * step) / 1e9)


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


def compare_manifest(
    archive: object,
    expected: dict[str, int],
    found: dict[str, int],
    *,
    problem: str = "archive does not match its source",
) -> None:
    """Raise :class:`ArchiveError` naming the files missing, unexpected or of another size.

    ``expected`` and ``found`` map POSIX relative paths to sizes (as :func:`folder_manifest`
    and :func:`~labsession.core.archive.tar_manifest` return them); ``problem`` starts the
    message after the archive.
    """
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or extra or wrong:
        raise ArchiveError(
            f"{archive}: {problem} "
            f"(missing {missing[:5]}, unexpected {extra[:5]}, size differs {wrong[:5]})"
        )


def identity(st: os.stat_result) -> tuple[int, ...]:
    """What tells that a path is still the very file that was listed (not a copy or rewrite)."""
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


#: Flags opening a folder on the way to a listed entry (a link in its place fails to open).
_FOLDER_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
#: Entries can be opened relative to folder descriptors (not on Windows: there, by full path).
BY_FOLDER = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


class ListedFolders:
    """Descriptors of the folders of a listing (:func:`walk_folder`) of folder ``src``.

    Each folder is opened relative to its parent's descriptor, from ``src`` down, without
    following a link, and checked to be the very folder listed (device and inode): a folder
    swapped for a link (or another folder) since the listing is refused, so nothing outside
    ``src`` is reached through it. Only the folders above the one last asked for stay open
    (the listing is sorted: a folder's entries come together); :meth:`close` closes them.
    ``src`` itself is opened through a link with ``follow_top`` (as the listing opened it),
    else not.
    """

    def __init__(self, src: Path, entries: list[FolderEntry], *, follow_top: bool) -> None:
        self.root = os.fspath(src)
        self._listed = {rel: st for rel, st, _ in entries if stat.S_ISDIR(st.st_mode)}
        self._top_flags = (
            _FOLDER_FLAGS & ~getattr(os, "O_NOFOLLOW", 0) if follow_top else _FOLDER_FLAGS
        )
        self._fds: dict[str, int] = {}

    def __enter__(self) -> ListedFolders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every folder descriptor still open."""
        while self._fds:
            os.close(self._fds.popitem()[1])

    def path(self, rel: str) -> str:
        """The full path of listed entry ``rel`` (POSIX relative path), for messages."""
        return os.path.join(self.root, rel) if rel else self.root

    def folder(self, rel: str) -> int:
        """An open descriptor of listed folder ``rel`` (``""``: ``src`` itself).

        Raises
        ------
        ArchiveError
            If ``rel`` or a folder above it is no longer the folder listed.
        """
        for other in [k for k in self._fds if k and rel != k and not rel.startswith(k + "/")]:
            os.close(self._fds.pop(other))  # not above rel: done with its entries
        missing = []  # rel and the folders above it not open yet, deepest first
        at = rel
        while at not in self._fds:
            missing.append(at)
            if not at:
                break
            at = at.rpartition("/")[0]
        for folder in reversed(missing):  # from the top down (no recursion: any depth)
            self._fds[folder] = self._open(folder)
        return self._fds[rel]

    def _open(self, rel: str) -> int:
        """Open listed folder ``rel`` in its parent (open already)."""
        parent, _, name = rel.rpartition("/")
        try:
            if rel:
                fd = os.open(name, _FOLDER_FLAGS, dir_fd=self._fds[parent])
            else:
                fd = os.open(self.root, self._top_flags)
        except OSError as exc:  # a link (or a file) in its place, or gone
            raise ArchiveError(
                f"{self.path(rel)}: changed since the folder was listed ({exc}); not packed"
            ) from exc
        if rel and identity(os.fstat(fd))[:2] != identity(self._listed[rel])[:2]:
            os.close(fd)
            path = self.path(rel)
            raise ArchiveError(f"{path}: replaced since the folder was listed; not packed")
        return fd


def _unlink_keeping_identity(
    name: str, parent_fd: int | None, checked: tuple[int, ...]
) -> tuple[int, ...] | None:
    """Unlink ``name``, one name of a hard-linked file still as ``checked``, and return the
    file's identity right after, read through a descriptor opened before the removal; None,
    with nothing removed, if it cannot be opened or is no longer as checked."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, dir_fd=parent_fd)
    except OSError:
        return None
    try:
        if identity(os.fstat(fd)) != checked:
            return None
        os.unlink(name, dir_fd=parent_fd)
        return identity(os.fstat(fd))
    finally:
        os.close(fd)


def remove_packed(src_dir: str | os.PathLike[str], entries: list[FolderEntry]) -> list[str]:
    """Remove exactly what ``entries`` (the listing packed) holds, then the folder if empty.

    Only the very files, links and folders listed are removed: one that was rewritten,
    replaced (even by a copy with the same size and times) or added since is kept, with the
    folders above it (a same-size rewrite is told by its times: list with
    ``walk_folder(..., settled=True)``). Paths are resolved through open folder descriptors
    that refuse links, so a folder swapped for a link since the listing never leads the
    removal elsewhere.
    Returns the relative paths left behind (``"."`` for the folder itself).
    """
    src = Path(src_dir)
    kept: list[str] = []
    # Hard-linked files: each name removed here changes the file's link count and status change
    # time; its other names, still to come, are compared with the file as that removal left it.
    unlinked: dict[tuple[int, int], tuple[int, ...]] = {}
    with ListedFolders(src, entries, follow_top=False) as folders:
        for rel, before, _ in reversed(entries):  # children before their folders
            parent, _, name = rel.rpartition("/")
            try:  # (a folder's own descriptor is closed now: it is not above its parent)
                parent_fd = folders.folder(parent)
            except ArchiveError:  # a folder above it changed: kept, as all it holds
                kept.append(rel)
                continue
            if stat.S_ISDIR(before.st_mode):
                try:
                    now = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                    if identity(now)[:2] != identity(before)[:2]:  # another folder in its place
                        kept.append(rel)
                        continue
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
            inode = (before.st_dev, before.st_ino)
            expected = unlinked.get(inode)  # the file as our last removal of a name left it
            if identity(now) != (identity(before) if expected is None else expected):
                kept.append(rel)
                continue
            if now.st_nlink > 1 and stat.S_ISREG(now.st_mode):
                left = _unlink_keeping_identity(name, parent_fd, identity(now))
                if left is None:  # not opened, or changed meanwhile: kept, and its other names
                    kept.append(rel)
                unlinked[inode] = left or ()
                continue
            os.unlink(name, dir_fd=parent_fd)
    try:
        os.rmdir(src)
    except OSError:
        kept.append(".")
    return kept
