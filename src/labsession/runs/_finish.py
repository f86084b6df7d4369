"""Move a finished run out of ``RUNNING/``: :func:`running2finished`.

Where a run goes is read from its folder alone, as scitex-session does: a run in
``<out>/RUNNING/<ID>/`` moves to ``<out>/FINISHED_SUCCESS/<ID>/`` (exit status 0 or None) or
``<out>/FINISHED_ERROR/<ID>/`` (anything else). A run folder that is not inside a ``RUNNING/``
folder (``start(sdir=...)`` names the run folder itself) stays where it is. The move is a rename
when it can be, and a verified copy otherwise (the source then renamed aside, hidden, before it
is deleted: a kill meanwhile leaves no part of the run in ``RUNNING/``); nothing is ever
overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from labsession.core.archive import folder_manifest
from labsession.core.atomic import fsync_dir
from labsession.runs._archive import archive_session_dir
from labsession.runs._ids import FINISHED_ERROR, FINISHED_SUCCESS, RUNNING

__all__ = ["finished_destination", "out_dir_of", "running2finished"]

logger = logging.getLogger(__name__)


def out_dir_of(run_dir: str | os.PathLike[str]) -> Path:
    """Return the output folder of a run folder: above ``RUNNING/``, else its parent.

    Examples
    --------
    >>> out_dir_of("/data/fit_out/RUNNING/2026Y-05M-17D-14h23m05s_a1B2").as_posix()
    '/data/fit_out'
    >>> out_dir_of("/data/my_run").as_posix()
    '/data'
    """
    run_dir = Path(run_dir)
    return run_dir.parent.parent if run_dir.parent.name == RUNNING else run_dir.parent


def finished_destination(run_dir: str | os.PathLike[str], exit_status: int | None) -> Path | None:
    """Return where the run folder goes at the end, or None when it stays in place.

    ``<out>/RUNNING/<name>`` goes to ``<out>/FINISHED_SUCCESS/<name>`` for an exit status of 0 or
    None and to ``<out>/FINISHED_ERROR/<name>`` otherwise; a folder elsewhere stays (None).
    """
    run_dir = Path(run_dir)
    if run_dir.parent.name != RUNNING:
        return None
    status_folder = FINISHED_SUCCESS if exit_status in (0, None) else FINISHED_ERROR
    return run_dir.parent.parent / status_folder / run_dir.name


def _copy_verified(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.copying")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, symlinks=True)
        expected = folder_manifest(src, links=True)
        found = folder_manifest(tmp, links=True)
        if expected != found:
            raise OSError(f"{tmp}: copy of {src} does not match it ({len(found)} files)")
        os.rename(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move(src: Path, dest: Path, max_wait: float) -> None:
    deadline = time.monotonic() + max_wait
    while True:
        try:
            os.rename(src, dest)
            fsync_dir(dest.parent)
            return
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                break
            if exc.errno not in (errno.EBUSY, errno.EACCES, errno.EPERM, errno.ENOTEMPTY):
                raise
            if time.monotonic() >= deadline:
                logger.warning("rename of %s kept failing (%s); copying instead", src, exc)
                break
            time.sleep(0.1)
    _copy_verified(src, dest)
    _remove_moved(src)


#: A run folder copied to its finished place, renamed aside while it is deleted; group 1: its ID.
_MOVED = re.compile(r"\.(.+)\.moved-[0-9a-f]{8}")


def _remove_moved(src: Path) -> None:
    """Delete run folder ``src``, copied whole to its finished place: renamed aside first
    (``.<ID>.moved-<8 hex>``), so a kill while deleting never leaves part of the run under its
    ID in ``RUNNING/``, where it would read as a run that died. The next run to finish from
    that ``RUNNING/`` deletes such a leftover (:func:`_clean_moved`)."""
    aside = src.with_name(f".{src.name}.moved-{secrets.token_hex(4)}")
    os.rename(src, aside)
    fsync_dir(src.parent)
    shutil.rmtree(aside, ignore_errors=True)  # another run's close may be deleting it too
    if os.path.lexists(aside):
        logger.warning("%s: copied to its finished place, but %s could not be deleted", src, aside)


def _clean_moved(running: Path) -> None:
    """Delete the ``.<ID>.moved-<8 hex>`` folders in ``running`` whose run is in its finished
    place (``FINISHED_SUCCESS/<ID>`` or ``FINISHED_ERROR/<ID>``, a folder or an archive):
    what a kill left of a run folder being deleted after its copy. Any other is kept."""
    out = running.parent
    try:
        entries = [e for e in os.scandir(running) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for entry in entries:
        match = _MOVED.fullmatch(entry.name)
        if match is None:
            continue
        run = match.group(1)
        finished = [
            p
            for status in (FINISHED_SUCCESS, FINISHED_ERROR)
            for p in (out / status).glob(f"{glob.escape(run)}*")
            if p.name == run or p.name.startswith(f"{run}.tar")
        ]
        if not finished:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if os.path.lexists(entry.path):
            logger.warning("%s: left by a kill after %s was copied, not deleted", entry.path, run)
        else:
            logger.info("deleted %s, left by a kill after %s was copied", entry.path, run)


def running2finished(
    CONFIG: dict[str, Any],
    exit_status: int | None = None,
    remove_src_dir: bool = True,
    max_wait: float = 60,
    archive_format: str | None = None,
) -> dict[str, Any]:
    """Move a run from ``RUNNING/`` to ``FINISHED_SUCCESS/`` or ``FINISHED_ERROR/``.

    Parameters
    ----------
    CONFIG
        The run's config; only ``SDIR_RUN`` is read (a dict holding just
        ``{"SDIR_RUN": ".../RUNNING/<ID>"}`` is enough), and it is updated to the new place.
    exit_status
        0 or None: ``FINISHED_SUCCESS``; anything else: ``FINISHED_ERROR``.
    remove_src_dir
        Move (rename) the folder. False copies it and keeps the source.
    max_wait
        Seconds to keep retrying a rename refused because the folder is busy (network file
        systems, virus scanners) before falling back to a verified copy.
    archive_format
        ``"tar.gz"`` (or another tar format) turns the finished folder into one archive file.

    Returns
    -------
    dict
        ``CONFIG``, with ``SDIR_RUN`` pointing at the finished folder or archive. A run folder
        that is not inside a ``RUNNING/`` folder stays where it is (only ``archive_format``
        applies to it).

    Raises
    ------
    FileExistsError
        If the destination exists already (nothing is overwritten).
    KeyError
        If ``CONFIG`` has no ``SDIR_RUN``.
    """
    src = Path(CONFIG["SDIR_RUN"])
    dest = finished_destination(src, exit_status)
    if dest is None:
        logger.debug("%s is not in a %s folder; the run stays where it is", src, RUNNING)
        dest = src
    else:
        if dest.exists():
            raise FileExistsError(
                f"{dest}: a finished run with this ID exists; {src} left in place"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        if remove_src_dir:
            _move(src, dest, max_wait)
            _clean_moved(src.parent)
            with contextlib.suppress(OSError):
                src.parent.rmdir()  # RUNNING/ when it was the last run in it
        else:
            _copy_verified(src, dest)
    CONFIG["SDIR_RUN"] = dest
    if archive_format is not None:
        CONFIG["SDIR_RUN"] = archive_session_dir(dest, format=archive_format, remove_src=True)
    return CONFIG
