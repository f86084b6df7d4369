"""Deleting a recording the operator threw away (``App.discard_recording``)."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path

from labsession.core.atomic import fsync_dir
from labsession.errors import SessionError
from labsession.recording import Session
from labsession.recording._leftovers import DISCARDED_SUFFIX
from labsession.recording._lock import SessionLock
from labsession.recording._writer import describe_error

__all__ = ["DISCARDED_SUFFIX", "discard_session"]

log = logging.getLogger(__name__)


def discard_session(session: Session) -> Path:
    """Close ``session`` (no stream may append to it any more) and delete its folder.

    The samples still queued are written first (the writer ends cleanly); a session whose disk
    failed closes all the same. The folder's lock is taken again, so nobody attaches it
    meanwhile, then the folder is renamed to a hidden ``.<name>.<8 hex>.discarded`` (from then
    on it is no session: ``App.unfinished_sessions`` skips hidden folders) and
    deleted. A kill during the deletion leaves that hidden folder (and the lock file), which the
    next attach or pack in the same base folder deletes.

    Returns
    -------
    Path
        The folder, now gone.

    Raises
    ------
    SessionError
        If another process attached the folder meanwhile, or it cannot be renamed (it is kept,
        whole). A hidden folder that cannot be deleted completely is logged, not raised.
    """
    folder = session.path
    try:
        session.close()
    except SessionError as exc:  # a failed disk: what is on it goes anyway
        log.info("%s: closed for discarding: %s", folder, exc)
    lock = SessionLock(folder)
    lock.acquire()
    try:
        aside = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}{DISCARDED_SUFFIX}")
        try:
            os.rename(folder, aside)
        except OSError as exc:
            raise SessionError(
                f"{folder}: not discarded, the folder is kept: cannot rename it to "
                f"{aside.name} ({describe_error(exc)})"
            ) from exc
        try:
            fsync_dir(folder.parent)
        except OSError as exc:
            log.debug("%s: fsync after the rename failed (%s)", folder.parent, exc)
        shutil.rmtree(aside, ignore_errors=True)
        if os.path.lexists(aside):
            log.warning("%s: discarded, but %s could not be deleted completely", folder, aside)
    finally:
        lock.release()
    return folder
