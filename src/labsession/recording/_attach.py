"""Attach: re-open a session folder left unfinished, to finish and pack it."""

from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labsession.errors import SessionError
from labsession.recording._arrays import (
    open_stream_arrays,
    recorded_closed_rows,
    set_closed_rows,
)
from labsession.recording._integrity import IntegrityTracker, integrity_from_timestamps
from labsession.recording._integrity_record import StreamIntegrity
from labsession.recording._layout import write_labels, zips_of_folder
from labsession.recording._leftovers import (
    clean_pack_temp_files,
    clean_removal_leftovers,
    clean_write_temp_files,
    recoverable_stamps,
)
from labsession.recording._lock import SessionLock
from labsession.recording._records import LabelEvent, StreamInfo
from labsession.recording._store import SessionStore
from labsession.recording._writer import atomic_chunk_writes, describe_error

if TYPE_CHECKING:
    from labsession.recording._session import Session

__all__ = ["attach_folder"]

log = logging.getLogger(__name__)


def attach_folder(cls: type[Session], folder: Path, *, buffer_seconds: float) -> Session:
    """What :meth:`Session.attach` does (see there)."""
    if folder.parent.is_dir():
        clean_removal_leftovers(folder.parent)
    if not folder.is_dir():
        packed = zips_of_folder(folder.parent, folder.name) if folder.parent.is_dir() else []
        hint = f"; it is packed already: {packed[0].name}" if packed else ""
        raise SessionError(
            f"{folder}: not a session folder (attach needs an unpacked folder){hint}"
        )
    lock = SessionLock(folder)
    lock.acquire()
    session = None
    try:
        clean_pack_temp_files(folder)
        clean_write_temp_files(folder)
        with SessionStore(folder) as found:
            infos = {name: found.stream_info(name) for name in found.stream_names}
            for name in infos:
                # Closed cleanly: every row it was closed with must still be there (raises
                # otherwise), never trimmed away as if a crash had cut it short.
                if recorded_closed_rows(found.stores[name], found.ts_stores[name]) is not None:
                    found.n_samples(name)
            labels, meta = found.label_track, found.meta
            class_names = found.class_names if "class_names" in meta else None
        session = cls(
            folder.parent,
            app_name=str(meta.get("app_name", "labsession")),
            class_names=class_names,
            buffer_seconds=buffer_seconds,
            _folder=folder,
            _lock=lock,
        )
        _adopt(session, meta, labels, infos)
    except BaseException:
        if session is not None:
            with contextlib.suppress(SessionError):
                session._writer.close()
        lock.release()
        raise
    return session


def _adopt(
    session: Session, meta: dict[str, Any], labels: list[LabelEvent], infos: dict[str, StreamInfo]
) -> None:
    """Take over the earlier run's meta, labels and arrays, trimmed to whole samples."""
    folder = session.path
    own = set(session._meta())
    session.created = str(meta.get("created", session.created))
    session._extra_meta = {
        k: v for k, v in meta.items() if k not in own and k not in ("write_errors", "integrity")
    }
    earlier = meta.get("write_errors")
    session._errors.earlier = [e for e in earlier if isinstance(e, dict)] if earlier else []
    session._labels = labels
    session._attributes_found = {}
    found = {}
    for name in infos:  # every stream checked before any is changed
        with atomic_chunk_writes():
            data, ts = open_stream_arrays(name, folder=folder, mode="r+")
        closed = recorded_closed_rows(data, ts)
        stamps = recoverable_stamps(data, ts)
        if closed is not None and len(stamps) < closed:  # never trim a closed stream's rows
            raise SessionError(
                f"{folder}: stream {name!r} was closed with {closed} rows (labsession."
                f"closed_rows in its arrays' zarr.json), but only the first {len(stamps)} read "
                f"whole: the session is damaged and is not trimmed; restore it from another copy"
            )
        found[name] = data, ts, stamps
    for name, info in infos.items():
        data, ts, stamps = found[name]
        n = len(stamps)
        if data.shape[0] != n or ts.shape[0] != n:
            log.warning(
                "%s: stream %r trimmed to %d samples (had %d samples, %d timestamps)",
                folder,
                name,
                n,
                data.shape[0],
                ts.shape[0],
            )
            try:
                data.resize((n, info.n_channels))
                ts.resize((n,))
            except OSError as exc:
                raise SessionError(
                    f"{folder}: stream {name!r} cannot be trimmed ({describe_error(exc)})"
                ) from exc
        session._attributes_found[name] = tuple(
            copy.deepcopy(dict(array.metadata.attributes)) for array in (data, ts)
        )
        try:  # rows may be appended now: the count it was closed with no longer holds
            set_closed_rows(data, ts, None)
        except OSError as exc:
            raise SessionError(
                f"{folder}: stream {name!r}: cannot remove labsession.closed_rows from its "
                f"arrays' zarr.json ({describe_error(exc)})"
            ) from exc
        session._writer.add_stream(name, info, data, ts, n_written=n)
        session._integrity[name] = _resumed_integrity(folder, name, info, meta, stamps)
        session.stores[name], session.ts_stores[name], session._infos[name] = data, ts, info
    try:
        session._write_meta()
        write_labels(folder, labels)
    except OSError as exc:
        raise SessionError(
            f"{folder}: cannot write the repaired meta.json and labels.json ({describe_error(exc)})"
        ) from exc


def _resumed_integrity(
    folder: Path, name: str, info: StreamInfo, meta: dict[str, Any], stamps: np.ndarray
) -> IntegrityTracker:
    """A tracker going on from the earlier run's record of stream ``name``.

    The record in ``meta.json`` may lag the disk by a few seconds (it is refreshed every few
    seconds, and not at all once the disk is full): the stamps on disk after its last one are
    counted on top of it. Without a readable record, one is computed from the stamps on disk.
    The sample count starts at the samples kept on disk, whose ``stamps`` (float64, s) are
    given (samples lost before are in ``write_errors``).
    """
    tracker = IntegrityTracker(info.fs)
    n = len(stamps)
    records = meta.get("integrity")
    entry = records.get(name) if isinstance(records, dict) else None
    record = None
    if entry is not None:
        try:
            record = StreamIntegrity.from_meta(
                entry, where=f"{folder}: meta.json integrity[{name!r}]"
            )
        except SessionError as exc:
            log.warning("%s; recomputed from the timestamps", exc)
    if record is None:
        record = integrity_from_timestamps(stamps, info.fs)
        tracker.resume(record, n_samples=n, last_stored=float(stamps[-1]) if n else None)
        return tracker
    # Stored stamps are strictly increasing (the repair) but for clock resets; the samples the
    # record has seen end at its last stamp, moved by at most its largest repair.
    if record.last_timestamp is None:
        k = 0
    elif n < 2 or bool(np.all(np.diff(stamps) > 0)):
        seen = record.last_timestamp + record.max_shift_s
        k = int(np.searchsorted(stamps, seen, side="right"))
    else:
        k = min(n, record.n_samples)
    tracker.resume(record, n_samples=k, last_stored=float(stamps[k - 1]) if k else None)
    if k < n:
        tracker.on_chunk(stamps[k:])  # strictly increasing already: counted, not moved
    return tracker
