"""The session writer: record streams and labels to a folder, then pack it into a verified zip."""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labsession.core.archive import pack_zip
from labsession.core.clock import local_clock
from labsession.errors import SessionError
from labsession.recording._arrays import create_stream_arrays
from labsession.recording._attach import attach_folder
from labsession.recording._incidents import WriteErrors
from labsession.recording._integrity import IntegrityTracker
from labsession.recording._integrity_record import StreamIntegrity
from labsession.recording._layout import (
    ZIP_SUFFIX,
    build_meta,
    check_stream_name,
    new_session_folder,
    write_labels,
    write_meta,
)
from labsession.recording._leftovers import (
    clean_pack_temp_files,
    clean_removal_leftovers,
    remove_folder_aside,
)
from labsession.recording._lock import SessionLock
from labsession.recording._packed import check_earlier_zip, verify_packed
from labsession.recording._reader import SessionReader
from labsession.recording._records import LabelEvent, StreamInfo
from labsession.recording._writer import (
    LostSamples,
    SessionWriter,
    atomic_chunk_writes,
    describe_error,
)

__all__ = ["Session"]

log = logging.getLogger(__name__)

#: Shortest time (s) between two housekeeping writes of the writer thread while recording
#: (recorded faults into ``meta.json``, labels that could not be written).
_HOUSEKEEPING_S = 1.0
#: Longest time (s) the ``integrity`` entry of ``meta.json`` lags behind while recording.
_INTEGRITY_S = 5.0


def _check_append(
    stream: str, info: StreamInfo, data: object, ts: object
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one append and return owned copies in the stream's dtype."""
    data = np.asarray(data)
    ts = np.asarray(ts)
    expected = f"(n_samples, {info.n_channels})"
    if data.ndim != 2 or data.shape[1] != info.n_channels:
        raise ValueError(f"stream {stream!r}: data must have shape {expected}, got {data.shape}")
    if ts.ndim != 1 or ts.shape[0] != data.shape[0]:
        raise ValueError(
            f"stream {stream!r}: timestamps must have shape ({data.shape[0]},) to match data "
            f"{data.shape}, got {ts.shape}"
        )
    if not np.can_cast(data.dtype, info.dtype, casting="same_kind"):
        raise ValueError(
            f"stream {stream!r}: data of dtype {data.dtype} cannot be stored as {info.dtype}"
        )
    if ts.dtype.kind not in "iuf":
        raise ValueError(f"stream {stream!r}: timestamps must be numbers, got dtype {ts.dtype}")
    ts = np.array(ts, dtype=np.float64)
    if not np.isfinite(ts).all():
        raise ValueError(f"stream {stream!r}: timestamps contain NaN or infinity")
    return np.array(data, dtype=info.dtype, order="C"), ts


class Session(SessionReader):
    """Record a session: per-stream Zarr arrays, a label track, ``meta.json``; pack to a zip.

    The folder ``base_path/YYYY-MM-DD_HH-MM-SS_<8 hex>`` is created at once with a ``meta.json``
    that is kept current (every ``init_stream``) and a ``labels.json`` rewritten atomically on
    every label, so a killed process leaves a folder that :func:`open_session_store` reads with
    every label and all samples but the last second; :meth:`attach` finishes such a folder.

    Until :meth:`close` or :meth:`pack_to_zip` returns, the session holds the folder's lock
    (:func:`session_lock_holder` says who holds a folder): no other process, nor another
    ``Session`` object, can attach or pack it meanwhile.

    A write error (a full disk) never blocks the threads that append and never loses what is
    in memory: the first one is kept in :attr:`error` and passed to the
    :meth:`add_error_listener` callbacks; :meth:`append` then raises :class:`SessionError` at
    once and counts the samples as lost (their number and time span go into ``meta.json`` under
    ``"write_errors"``); labels stay in memory and are written as soon as the disk takes them.

    Parameters
    ----------
    base_path
        Parent folder (created if missing).
    app_name
        Written to ``meta.json``; :meth:`save_meta` can change it.
    class_names
        Names of the label classes; :meth:`save_meta` can change them.
    buffer_seconds
        Data per stream held in memory before :meth:`append` blocks (nothing is dropped while
        the disk takes the samples).

    Raises
    ------
    SessionError
        If the folder or its first files cannot be written, naming the folder and the cause.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from labsession.recording import Session, StreamInfo
    >>> with Session(tempfile.mkdtemp()) as session:
    ...     session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    ...     session.append("emg", np.zeros((10, 2), np.float32), np.arange(10) / 100.0)
    ...     session.add_label(0, timestamp=0.0)
    >>> session.n_samples("emg")
    10
    """

    def __init__(
        self,
        base_path: str | os.PathLike[str] = "sessions",
        *,
        app_name: str = "labsession",
        class_names: Sequence[str] | None = None,
        buffer_seconds: float = 30.0,
        _folder: Path | None = None,
        _lock: SessionLock | None = None,
    ):
        if _folder is None:
            try:
                _folder = new_session_folder(base_path)
            except OSError as exc:
                raise SessionError(
                    f"{base_path}: cannot create a session folder ({describe_error(exc)})"
                ) from exc
        self.path = _folder
        self.app_name = app_name
        self.class_names = list(class_names) if class_names is not None else []
        self._has_class_names = class_names is not None
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.stores, self.ts_stores, self._infos = {}, {}, {}
        self._labels: list[LabelEvent] = []
        self._label_lock = threading.Lock()
        self._meta_lock = threading.Lock()
        self._closed = False
        self._packed: Path | None = None
        self._errors = WriteErrors(_folder)
        self._integrity: dict[str, IntegrityTracker] = {}
        self._faults_dirty = False  # a fault was recorded since meta.json was last written
        self._integrity_due = 0.0
        self._extra_meta: dict[str, Any] = {}  # keys of an earlier writer's meta.json, kept
        self._meta_dirty = False  # a meta.json write failed
        self._labels_dirty = False  # a labels.json write failed
        self._housekeeping_due = 0.0
        self._lock = _lock if _lock is not None else SessionLock(_folder)
        self._writer = SessionWriter(
            str(self.path),
            buffer_seconds=buffer_seconds,
            on_error=lambda exc: self._errors.note("writing samples", exc),
            after_batch=self._housekeeping,
        )
        if _lock is None:
            try:
                self._lock.acquire()
                self._write_meta()
                write_labels(self.path, [])
            except BaseException as exc:
                self._writer.close()
                self._lock.release()
                with contextlib.suppress(OSError):
                    self.path.rmdir()  # only if still empty: then it holds nothing
                if not isinstance(exc, OSError):
                    raise
                raise SessionError(
                    f"{self.path}: cannot start the session ({describe_error(exc)})"
                ) from exc

    # -- streams -------------------------------------------------------------------------------
    def init_stream(self, name: str, info: StreamInfo) -> None:
        """Create the arrays of stream ``name`` and record its info in ``meta.json``.

        Raises
        ------
        SessionError
            If the arrays or ``meta.json`` cannot be written, naming the folder and the cause.
        """
        self._check_open()
        check_stream_name(name)
        if not isinstance(info, StreamInfo):
            raise TypeError(f"info must be a StreamInfo, got {type(info).__name__}")
        with self._meta_lock:
            if name in self._infos:
                raise ValueError(f"{self.path}: stream {name!r} is already initialised")
            try:
                with atomic_chunk_writes():
                    data, ts = create_stream_arrays(self.path, name, info)
            except OSError as exc:
                raise self._errors.note(f"creating the arrays of stream {name!r}", exc) from exc
            self._writer.add_stream(name, info, data, ts)
            self._integrity[name] = IntegrityTracker(info.fs)
            self.stores[name], self.ts_stores[name], self._infos[name] = data, ts, info
        self._save_meta_or_raise()

    def append(self, name: str, data: np.ndarray, timestamps: np.ndarray) -> None:
        """Queue ``data (n_samples, n_channels)`` with its ``timestamps (n_samples,)``.

        Thread-safe; returns without waiting for the disk (it copies the samples). Blocks only
        when the stream has ``buffer_seconds`` of data waiting, so nothing is dropped while the
        disk takes the samples.

        Raises
        ------
        ValueError
            Naming the stream and the shapes, for wrong shapes, a dtype that cannot be stored
            in the stream's dtype, or non-finite timestamps; nothing is written then.
        SessionError
            At once, without blocking, once writing has failed (:attr:`error`): the samples are
            counted as lost (:meth:`lost_samples`). Also when the session is closed.
        """
        if self._closed:
            raise SessionError(f"{self.path}: session is closed; cannot append to {name!r}")
        info = self.stream_info(name)
        data, timestamps = _check_append(name, info, data, timestamps)
        if data.shape[0]:
            timestamps = self._integrity[name].on_chunk(timestamps)
            self._writer.append(name, data, timestamps)

    def flush(self) -> None:
        """Return once every sample appended so far is on disk.

        Raises
        ------
        SessionError
            If writing has failed (:attr:`error`): those samples will never be on disk.
        """
        if not self._closed:
            self._writer.flush()

    # -- labels and meta -----------------------------------------------------------------------
    def add_label(self, class_index: int, timestamp: float | None = None) -> LabelEvent:
        """Add a label (``timestamp`` defaults to the LSL clock now); on disk before returning.

        If ``labels.json`` cannot be written (a full disk), the label is added and returned all
        the same: it stays in memory and is written with the next label, by the writer thread
        (within about a second of the disk taking data again) or at :meth:`close`. The failure
        is reported through :attr:`error` and the error listeners.
        """
        self._check_open()
        event = LabelEvent(local_clock() if timestamp is None else timestamp, class_index)
        with self._label_lock:
            keys = [e.timestamp for e in self._labels]
            self._labels.insert(bisect.bisect_right(keys, event.timestamp), event)
            try:
                write_labels(self.path, self._labels)
                self._labels_dirty = False
            except OSError as exc:
                self._labels_dirty = True
                error = self._errors.note("writing labels.json", exc)
                log.warning("%s; label %s is kept in memory, written when possible", error, event)
        return event

    def save_meta(
        self, app_name: str | None = None, class_names: Sequence[str] | None = None
    ) -> None:
        """Flush, then write ``meta.json`` with the app name and class names.

        Raises
        ------
        SessionError
            If writing samples failed (:attr:`error`), or ``meta.json`` cannot be written.
        """
        self._check_open()
        if app_name is not None:
            self.app_name = app_name
        if class_names is not None:
            self.class_names = list(class_names)
            self._has_class_names = True
        self.flush()
        self._save_meta_or_raise()

    def record_fault(self, stream: str, kind: str, time: float, message: str) -> None:
        """Note a fault of stream ``stream`` in its integrity record; no disk access.

        Called by acquisition threads (source errors, disconnects); never raises for I/O. The
        writer thread puts it into ``meta.json`` (``integrity``) within about a second;
        :meth:`close` does too. Every fault is counted; the first and last 20 of each kind are
        kept with their time and message (:meth:`integrity`).

        Parameters
        ----------
        stream
            The stream's name.
        kind
            What happened, e.g. ``"source_error"``, ``"disconnected"``, ``"reconnected"``.
        time
            When, in seconds on the LSL clock (that of the timestamps).
        message
            Details, e.g. ``"OSError: USB device not responding"``.
        """
        if not math.isfinite(time):
            raise ValueError(f"fault time must be a finite LSL time in seconds, got {time!r}")
        tracker = self._integrity.get(stream)
        if tracker is None:
            log.warning("%s: fault of unknown stream %r not recorded: %s", self.path, stream, kind)
            return
        tracker.on_fault(kind, time, message)
        self._faults_dirty = True

    def integrity(self, name: str) -> StreamIntegrity:
        """The integrity record of stream ``name`` so far (live; see :class:`StreamIntegrity`).

        Counts every sample appended (also those a write error lost: see :meth:`write_errors`),
        gaps, backward timestamp steps, and the faults the acquisition recorded. After
        :meth:`attach` it goes on from the earlier run's record.
        """
        self._check_stream(name)
        return self._integrity[name].snapshot()

    def _meta(self) -> dict[str, Any]:
        meta = build_meta(
            app_name=self.app_name,
            created=self.created,
            streams=dict(self._infos),
            class_names=self.class_names if self._has_class_names else None,
        )
        for key, value in self._extra_meta.items():
            meta.setdefault(key, value)
        if self._integrity:
            meta["integrity"] = {
                name: tracker.snapshot().to_meta() for name, tracker in self._integrity.items()
            }
        if errors := self.write_errors():
            meta["write_errors"] = errors
        return meta

    def _write_meta(self) -> None:
        """Write ``meta.json`` (raises ``OSError``)."""
        with self._meta_lock:
            self._faults_dirty = self._meta_dirty = False
            self._integrity_due = time.monotonic() + _INTEGRITY_S
            try:
                write_meta(self.path, self._meta())
            except BaseException:
                self._meta_dirty = True
                raise

    def _save_meta_or_raise(self) -> None:
        try:
            self._write_meta()
        except OSError as exc:
            raise self._errors.note("writing meta.json", exc) from exc

    # -- write errors --------------------------------------------------------------------------
    @property
    def error(self) -> SessionError | None:
        """The first write error (it names the folder and the cause), or None."""
        return self._errors.error

    def add_error_listener(self, callback: Callable[[SessionError], None]) -> None:
        """Call ``callback(error)`` once, at the first write error (at once if there was one).

        It runs on the thread that met the error, often the session's writer thread: it must be
        quick and must not wait for this session (no :meth:`flush`, :meth:`close`).
        """
        self._errors.add_listener(callback)

    def lost_samples(self) -> dict[str, LostSamples]:
        """Per stream, the samples appended that are not on disk because writing failed."""
        return self._writer.lost()

    def write_errors(self) -> list[dict[str, Any]]:
        """What ``meta.json`` holds under ``"write_errors"``: one entry per failed run.

        Each is ``{"error": message, "time": local time, "lost": {stream: {"n_samples",
        "first_timestamp", "last_timestamp"}}}`` (timestamps in seconds, the stream's clock).
        Entries of earlier runs (before :meth:`attach`) come first; ``[]`` if nothing failed.
        """
        return self._errors.entries(self.lost_samples())

    def _housekeeping(self) -> None:
        """Writer thread, after a write: retry labels, write recorded faults (at most 1/s), and
        the integrity record (at least every :data:`_INTEGRITY_S` s)."""
        now = time.monotonic()
        if now < self._housekeeping_due:
            return
        stale = now >= self._integrity_due
        if not (self._labels_dirty or self._meta_dirty or self._faults_dirty or stale):
            return
        self._housekeeping_due = now + _HOUSEKEEPING_S
        with self._label_lock, contextlib.suppress(OSError):  # reported when it first failed
            if self._labels_dirty:
                write_labels(self.path, self._labels)
                self._labels_dirty = False
                log.info("%s: labels.json written again", self.path)
        if self._meta_dirty or self._faults_dirty or stale:
            with contextlib.suppress(OSError):
                self._write_meta()

    # -- reading while recording ---------------------------------------------------------------
    def n_samples(self, name: str) -> int:
        """Samples of stream ``name`` on disk (call :meth:`flush` first to include queued ones)."""
        return super().n_samples(name)

    def get_continuous(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Flush, then return ``(data (n_samples, n_channels), ts (n_samples,))``."""
        self.flush()
        return super().get_continuous(name)

    # -- finishing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Write everything queued, stop the writer, save meta and labels; release the folder.

        Idempotent: a later call retries what an earlier one could not write (``meta.json``,
        labels), e.g. once disk space was freed.

        Raises
        ------
        SessionError
            If something is not on disk: samples lost to a write error (said by the first call
            only), or ``meta.json`` / ``labels.json`` still unwritten (the labels' values and the
            write errors are then logged). The session is closed and its lock released anyway.
        """
        try:
            self._finish()
        finally:
            self._lock.release()

    def _finish(self) -> None:
        """Close the writer (once), write what lags behind; raise if anything is not on disk."""
        if self._packed is not None:
            return
        first = not self._closed
        if first:
            try:
                self._writer.close()
            except SessionError:
                pass  # the writer's error is self.error, described below
            finally:
                self._closed = True
        problems = []
        if first and self._writer.error is not None:
            problems.append(
                f"writing samples failed ({describe_error(self._writer.error)}); lost: "
                + ", ".join(
                    f"{name} {lost.n_samples} samples ({lost.first_timestamp:.3f} to "
                    f"{lost.last_timestamp:.3f} s)"
                    for name, lost in self.lost_samples().items()
                )
            )
        if first or self._meta_dirty or self._faults_dirty:
            try:
                self._write_meta()
            except Exception as exc:  # noqa: BLE001 - an OSError or a bug: labels still go out
                problems.append(str(self._errors.note("writing meta.json", exc)))
                log.error(
                    "%s: meta.json not written; its write_errors: %s; its integrity: %s",
                    self.path,
                    self.write_errors(),
                    self._meta().get("integrity"),
                )
        with self._label_lock:
            if first or self._labels_dirty:
                try:
                    write_labels(self.path, self._labels)
                    self._labels_dirty = False
                except OSError as exc:
                    self._labels_dirty = True
                    problems.append(str(self._errors.note("writing labels.json", exc)))
                    log.error(
                        "%s: labels.json not written; the labels (timestamp, class_index) are %s",
                        self.path,
                        [(e.timestamp, e.class_index) for e in self._labels],
                    )
        if problems:
            raise SessionError(
                f"{self.path}: the session is incomplete on disk: " + "; ".join(problems)
            ) from self.error

    def pack_to_zip(self) -> Path:
        """Close, pack the folder into ``<folder>.session.zip``, verify it, remove the folder.

        The zip (ZIP_STORED, members at the archive root, as MyoGestic writes them) is built
        beside the folder under a temporary name, every member's CRC is read back, and the
        session is reopened from it to check meta, labels and every array's shape. Only then is
        it renamed into place and the folder removed: renamed aside to ``.<name>.removing``
        first, then deleted, so no half-deleted folder ever carries the session's name. On any
        failure the folder is kept and no partial zip remains; what a kill leaves (a temporary
        zip, a ``.removing`` folder) the next :meth:`attach` or pack cleans up. A zip already
        in place (a pack killed before it removed the folder) is kept and the folder removed
        only if the zip reads back whole and holds every file of the folder; otherwise
        :class:`SessionError` says why and both are kept. The folder's lock is held
        throughout.

        Returns
        -------
        Path
            The ``.session.zip``, which is also the new :attr:`path`.

        Raises
        ------
        SessionError
            If writing failed (:attr:`error`: the folder is kept; free space, then
            ``Session.attach(folder).pack_to_zip()``), the zip exists already but does not hold
            the folder, another process holds the folder, or the disk fills up while packing
            (the folder is kept).
        ArchiveError
            If the zip does not read back as the recording (the folder is kept).
        """
        if self._packed is not None:
            raise SessionError(f"{self.path}: session is already packed")
        if self._writer.error is not None:
            with contextlib.suppress(SessionError):
                self.close()
            raise SessionError(
                f"{self.path}: not packed, the folder is kept: {self.error}. Free space, then "
                "Session.attach(folder).pack_to_zip() packs what was written"
            )
        self._lock.acquire()  # held already, unless the session was closed before
        try:
            self._finish()
            return self._pack()
        finally:
            self._lock.release()

    def _pack(self) -> Path:
        n_samples = {name: self.n_samples(name) for name in self._infos}
        folder = self.path
        zip_path = folder.with_name(folder.name + ZIP_SUFFIX)
        clean_pack_temp_files(folder)
        clean_removal_leftovers(folder.parent)
        if os.path.lexists(zip_path):  # a pack killed before it removed the folder?
            check_earlier_zip(folder, zip_path, self._infos, n_samples, self._labels)
            log.info("%s: already packed whole by an earlier run; removing the folder", zip_path)
        else:
            try:
                pack_zip(folder, zip_path)
            except OSError as exc:
                raise SessionError(
                    f"{folder}: packing into {zip_path.name} failed ({describe_error(exc)}); "
                    "the folder is kept"
                ) from exc
            try:
                self._verify_packed(zip_path, n_samples)
            except BaseException:
                zip_path.unlink(missing_ok=True)
                raise
        remove_folder_aside(folder)
        self.stores, self.ts_stores = {}, {}
        self._packed = self.path = zip_path
        log.info("packed %s (%d streams, %d labels)", zip_path, len(n_samples), len(self._labels))
        return zip_path

    def _verify_packed(self, zip_path: Path, n_samples: dict[str, int]) -> None:
        verify_packed(zip_path, self._infos, n_samples, self._labels)

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError(f"{self.path}: session is closed")

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "packed" if self._packed else "closed" if self._closed else "recording"
        if self.error is not None and not self._packed:
            state += ", failed"
        return f"Session({str(self.path)!r}, {state}, streams={self.stream_names})"

    # -- recovery ------------------------------------------------------------------------------
    @classmethod
    def attach(cls, folder: str | os.PathLike[str], *, buffer_seconds: float = 30.0) -> Session:
        """Re-open a session folder left unfinished (a crash, a full disk) to finish and pack it.

        Takes the folder's lock; removes temporary files of interrupted writes and of an
        interrupted pack of this session, and the leftovers of interrupted folder removals in
        the same base folder whose zip is whole; trims every stream to the samples written
        whole (readable, with finite timestamps), logging what was cut; keeps the ``meta.json``
        entries of the earlier run (``write_errors``, ``integrity``, and keys of other writers).
        Returns a writable session: call :meth:`pack_to_zip` (or keep appending).

        Raises
        ------
        SessionError
            If ``folder`` is not an unpacked session folder, if another live process holds it
            (naming its process id and host), or if the disk refuses the repaired files.
        """
        return attach_folder(cls, Path(folder), buffer_seconds=buffer_seconds)
