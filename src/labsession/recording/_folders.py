"""The sessions inside a folder: what ``info``, ``TrainingData`` and scripts take for a parent.

A session is a folder holding ``meta.json`` or a ``.session.zip`` file; a *parent* is a folder
that is not a session itself. :func:`find_sessions` lists the sessions directly inside a parent,
sorted by name (session names start with their start time, so this is also time order), each
recording once: a folder beside its own pack (what a pack stopped between putting the zip in
place and removing the folder leaves) is one recording, not two.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from labsession.errors import SessionError
from labsession.recording._layout import LABELS_FILE, META_FILE, ZIP_SUFFIX, folders_of_pack

log = logging.getLogger(__name__)

__all__ = ["find_sessions", "is_session_folder", "sessions_of"]


def is_session_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a session folder (a folder holding ``meta.json``)."""
    path = Path(path)
    return path.is_dir() and (path / META_FILE).is_file()


def _is_session_entry(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith("."):  # temporary files of atomic writes, hidden folders
        return False
    try:
        if entry.is_dir(follow_symlinks=False):
            return (Path(entry.path) / META_FILE).is_file()
        return entry.name.endswith(ZIP_SUFFIX) and entry.is_file(follow_symlinks=False)
    except OSError:  # a broken link, an entry removed since the listing
        return False


def _looks_like_a_session(folder: Path) -> bool:
    """A folder with a session's own files but no ``meta.json`` (a damaged session): kept as a
    session, so that reading it says what is wrong with it."""
    if (folder / LABELS_FILE).is_file():
        return True
    try:
        with os.scandir(folder) as entries:
            return any(e.name.endswith(".zarr") for e in entries)
    except OSError:
        return False


def find_sessions(folder: str | os.PathLike[str]) -> list[Path]:
    """The session folders and ``.session.zip`` files directly inside ``folder``, by name.

    Parameters
    ----------
    folder
        A folder holding sessions (e.g. a recorder's ``base_path``).

    Returns
    -------
    list of Path
        Sorted by name; hidden entries (``.name``) and links (to folders or to zips, which may
        lead anywhere) are left out: give a linked session by its own path. Empty if there are
        none.

        Each recording is listed once. A folder beside a zip named as its pack
        (``<folder>.session.zip``, ``<folder>_<slug>.session.zip``) that is an earlier pack of
        the folder's recording, held in full by the folder (what a pack stopped between
        putting the zip in place and removing the folder leaves), is listed as the folder
        alone, with a warning: the folder is the source, as for :meth:`Session.pack_to_zip
        <labsession.recording.Session.pack_to_zip>`, which replaces that zip by a pack of the
        folder. A zip the folder does not hold in full (another recording of a look-alike
        name, a fuller copy, one that cannot be read) is listed beside it, as pack keeps it.

    Raises
    ------
    SessionError
        If ``folder`` is not a folder or cannot be listed.
    """
    folder = Path(folder)
    try:
        with os.scandir(folder) as entries:
            found = [Path(e.path) for e in entries if _is_session_entry(e)]
    except FileNotFoundError:
        raise SessionError(f"{folder}: no such folder") from None
    except NotADirectoryError:
        raise SessionError(f"{folder}: not a folder") from None
    except OSError as exc:
        raise SessionError(f"{folder}: cannot be listed ({exc.strerror})") from exc
    return _one_per_recording(sorted(found, key=lambda p: p.name))


def _one_per_recording(found: list[Path]) -> list[Path]:
    """``found`` without the zips that are earlier packs of a folder beside them, held there in
    full (see :func:`find_sessions`); only pairs named so are read (a few small files and
    chunks each)."""
    from labsession.recording._packed import pack_held_by

    folders = {p.name: p for p in found if not p.name.endswith(ZIP_SUFFIX) or p.is_dir()}
    if not folders:
        return found
    left_out: set[Path] = set()
    for zip_path in found:
        if folders.get(zip_path.name) == zip_path:
            continue
        for folder in (folders[n] for n in folders_of_pack(zip_path.name) if n in folders):
            if pack_held_by(folder, zip_path) is None:
                left_out.add(zip_path)
                log.warning(
                    "%s: left out, an earlier pack of %s beside it, which holds all of it "
                    "(a pack stopped before it removed the folder; "
                    "Session.attach(folder).pack_to_zip() finishes it)",
                    zip_path,
                    folder.name,
                )
                break
    return [p for p in found if p not in left_out]


def sessions_of(path: str | os.PathLike[str]) -> list[Path]:
    """``[path]`` for a session (folder or zip), or the sessions inside a parent folder.

    A folder holding a session's own files (``labels.json``, ``*.zarr``) without ``meta.json``
    is taken as a damaged session, not as a parent: reading it then says what is missing.

    Raises
    ------
    SessionError
        If ``path`` is a folder that is no session and holds none: ``"no sessions in ..."``.
    """
    path = Path(path)
    if not path.is_dir() or is_session_folder(path) or _looks_like_a_session(path):
        return [path]
    found = find_sessions(path)
    if not found:
        raise SessionError(
            f"no sessions in {path}: it holds no {META_FILE} (so it is no session folder) and no "
            f"session folders or {ZIP_SUFFIX} files"
        )
    return found
