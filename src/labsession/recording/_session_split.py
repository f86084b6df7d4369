"""Which sessions recorded a stream: :func:`split_sessions_by_stream`.

A study's sessions need not share one layout (a glove or a force sensor on some days only).
Splitting them first tells which ones an aligned or a target iterator will take windows from,
before reading any sample.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from labsession.errors import SessionError
from labsession.recording._folders import sessions_of
from labsession.recording._store import open_session_store
from labsession.recording._windows import PathLike, SkippedSession

__all__ = ["SessionSplit", "split_sessions_by_stream"]

log = logging.getLogger(__name__)


class SessionSplit(NamedTuple):
    """Sessions split by whether they recorded a stream (each list in the order given).

    Unpacks as ``with_stream, without_stream, unreadable = split``.
    """

    #: Sessions that recorded the stream (even with no sample in it).
    with_stream: list[Path]
    #: Sessions that can be read and did not record it.
    without_stream: list[Path]
    #: Paths that cannot be read as sessions, each with the reason.
    unreadable: list[SkippedSession]


def split_sessions_by_stream(paths: PathLike | Iterable[PathLike], stream: str) -> SessionSplit:
    """Split sessions into those that recorded ``stream``, those that did not, and the rest.

    Each session is opened (its ``meta.json`` read) and closed at once; no sample is read.

    Parameters
    ----------
    paths
        Session folders, ``.session.zip`` archives and/or parent folders (one path or an
        iterable). A parent folder (one that is no session itself) stands for the sessions
        directly inside it, sorted by name, as in :class:`TrainingData`.
    stream
        The stream name, e.g. ``"glove"``.

    Returns
    -------
    SessionSplit
        ``(with_stream, without_stream, unreadable)``: lists of paths, and of
        :class:`SkippedSession` (path and reason) for what cannot be opened (missing, corrupt
        ``meta.json``, a parent folder holding no session).

    Examples
    --------
    >>> split = split_sessions_by_stream("sessions", "glove")  # doctest: +SKIP
    >>> it = iter_aligned_windows(split.with_stream, "emg", ["glove"], 0.2, 0.05)  # doctest: +SKIP
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    split = SessionSplit([], [], [])
    for given in paths:
        try:
            sessions = sessions_of(given)
        except SessionError as exc:
            split.unreadable.append(SkippedSession(Path(given), str(exc)))
            continue
        for path in sessions:
            try:
                store = open_session_store(path)
            except (SessionError, OSError) as exc:
                split.unreadable.append(SkippedSession(path, f"cannot be opened ({exc})"))
                continue
            with store:
                has_it = stream in store.stream_names
            (split.with_stream if has_it else split.without_stream).append(path)
    log.info(
        "stream %r: recorded in %d session(s), not in %d; %d unreadable",
        stream,
        len(split.with_stream),
        len(split.without_stream),
        len(split.unreadable),
    )
    return split
