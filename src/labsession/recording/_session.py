"""The session writer: record streams and labels to a folder, then pack it into a verified zip.

:class:`Session` holds the streams (their arrays and the writer thread that fills them) and the
session's life: close, pack, attach. Its own files (``meta.json``, ``labels.json``, the name and
facts) are kept current by its base, :class:`~labsession.recording._upkeep.SessionUpkeep`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from labsession.errors import SessionError
from labsession.recording._arrays import create_stream_arrays, set_closed_rows
from labsession.recording._attach import attach_folder
from labsession.recording._facts import check_session_name, encode_facts
from labsession.recording._integrity import IntegrityTracker
from labsession.recording._layout import (
    ZIP_SUFFIX,
    check_stream_name,
    new_session_folder,
    packed_zip_path,
    write_labels,
)
from labsession.recording._leftovers import (
    clean_pack_temp_files,
    clean_removal_leftovers,
    remove_folder_aside,
)
from labsession.recording._live import LiveArrays
from labsession.recording._lock import SessionLock
from labsession.recording._packed import (
    is_regular_file,
    pack_folder,
    pack_held_by,
    remove_earlier_packs,
    verify_packed,
)
from labsession.recording._records import Recording, StreamInfo, check_append
from labsession.recording._upkeep import SessionUpkeep, checked_app_name, checked_class_names
from labsession.recording._writer import SessionWriter, atomic_chunk_writes, describe_error

__all__ = ["Session"]

log = logging.getLogger(__name__)


class Session(SessionUpkeep):
    """Record a session: per-stream Zarr arrays, a label track, ``meta.json``; pack to a zip.

    The folder ``base_path/YYYY-MM-DD_HH-MM-SS_<8 hex>`` is created at once with a ``meta.json``
    that is kept current (every ``init_stream``) and a ``labels.json`` rewritten atomically on
    every label, so a killed process leaves a folder that :func:`open_session_store` reads with
    every label and all samples but the last second; :meth:`attach` finishes such a folder.

    Until :meth:`close` or :meth:`pack_to_zip` returns, the session holds the folder's lock
    (:func:`session_lock_holder` says who holds a folder): no other process, nor another
    ``Session`` object, can attach or pack it meanwhile.

    ``stores[name]`` and ``ts_stores[name]`` are the stream's Zarr arrays, as in MyoGestic:
    reading an entry first waits until every sample appended so far is written, so the array
    holds them all (:meth:`append` itself never waits for the disk).

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
        Names of the label classes, a list of text (``class_names[i]`` names class ``i``);
        :meth:`save_meta` can change them.
    name
        The session's name (:attr:`name`): ``meta.json`` ``name``, and as a slug the zip's file
        name, ``<folder>_<slug>.session.zip``.
    extras
        JSON facts about the session (:attr:`extras`), e.g. a force calibration; NumPy numbers
        and arrays are saved as numbers and lists.
    buffer_seconds
        Data per stream held in memory before :meth:`append` blocks (nothing is dropped while
        the disk takes the samples).

    Raises
    ------
    SessionError
        If ``app_name``, ``class_names``, ``name`` or ``extras`` cannot be saved as its readers
        read them (naming the key and the value: a plain string or numbers as
        ``class_names``, text with a lone surrogate, ...), before the folder is created; or if
        the folder or its first files cannot be written, naming the folder and the cause.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from labsession.recording import Session, StreamInfo
    >>> with Session(tempfile.mkdtemp(), name="pilot 1") as session:
    ...     session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    ...     session.append("emg", np.zeros((10, 2), np.float32), np.arange(10) / 100.0)
    ...     event = session.add_label(0, timestamp=0.0)
    ...     session.stores["emg"].shape  # every sample appended, no flush needed
    (10, 2)
    >>> session.n_samples("emg")
    10
    """

    def __init__(
        self,
        base_path: str | os.PathLike[str] = "sessions",
        *,
        app_name: str = "labsession",
        class_names: Sequence[str] | None = None,
        name: str | None = None,
        extras: Mapping[str, Any] | None = None,
        buffer_seconds: float = 30.0,
        _folder: Path | None = None,
        _lock: SessionLock | None = None,
    ):
        name = check_session_name(name)
        if _folder is None:  # checked before the folder exists: nothing to undo
            where = f"{base_path}: no session started: meta.json: "
            app_name = checked_app_name(app_name, where)
            if class_names is not None:
                class_names = checked_class_names(class_names, where)
        extras = {} if extras is None else extras
        encoded = encode_facts(extras, None)  # before the folder exists: nothing to undo
        if _folder is None:
            try:
                _folder = new_session_folder(base_path)
            except OSError as exc:
                raise SessionError(
                    f"{base_path}: cannot create a session folder ({describe_error(exc)})"
                ) from exc
        super().__init__(
            _folder,
            app_name=app_name,
            class_names=class_names,
            name=name,
            facts=(extras, None, encoded),
        )
        self.stores, self.ts_stores = LiveArrays(self.flush), LiveArrays(self.flush)
        #: Per stream, the attributes of its arrays as attach found them (before it removed
        #: the record of the rows they were closed with), put back when a pack is refused;
        #: None for a new session.
        self._attributes_found: dict[str, tuple[dict[str, Any], dict[str, Any]]] | None = None
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
        data, timestamps = check_append(name, info, data, timestamps)
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

    def save_meta(
        self,
        app_name: str | None = None,
        class_names: Sequence[str] | None = None,
        control_space: Any = None,
    ) -> None:
        """Flush, then write ``meta.json`` with the app name, class names and control space.

        Parameters
        ----------
        app_name, class_names
            New values (None keeps the current ones).
        control_space
            What the session's controls mean (:attr:`control_space`, any JSON value), saved
            under ``control_space`` as MyoGestic does; None keeps the current one.

        Raises
        ------
        SessionError
            If ``app_name`` or ``class_names`` cannot be saved as readers read them (a plain
            string or numbers as ``class_names``, ...), or ``control_space`` or :attr:`extras`
            is not JSON (naming the key and the value; nothing is changed then), writing
            samples failed (:attr:`error`), or ``meta.json`` cannot be written.
        """
        self._check_open()
        where = f"{self.path}: meta.json: "
        if app_name is not None:
            app_name = checked_app_name(app_name, where)
        if class_names is not None:
            class_names = checked_class_names(class_names, where)
        if control_space is not None:
            self.control_space = control_space
        if app_name is not None:
            self.app_name = app_name
        if class_names is not None:
            self.class_names = class_names
        self.flush()
        self._save_meta_or_raise(strict=True)

    # -- reading while recording ---------------------------------------------------------------
    def _stored_array(self, name: str, *, timestamps: bool) -> zarr.Array:
        return (self.ts_stores if timestamps else self.stores).peek(name)

    # Every read flushes first, so it sees every sample appended so far, as MyoGestic's reads
    # do (its append writes before returning). After a write error they raise SessionError (as
    # flush does) rather than show fewer samples; once closed they read what is on disk.
    def n_samples(self, name: str) -> int:
        """Flush, then return the samples of stream ``name``: every one appended so far."""
        self.flush()
        return super().n_samples(name)

    def read_rows(self, name: str, start: int, stop: int, **options: Any) -> np.ndarray:
        """Flush, then read rows ``[start, stop)`` (see :meth:`SessionReader.read_rows
        <labsession.recording._reader.SessionReader.read_rows>` for ``options``)."""
        self.flush()
        return super().read_rows(name, start, stop, **options)

    def get_timestamps(self, name: str) -> np.ndarray:
        """Flush, then return the ``(n_samples,)`` float64 timestamps of stream ``name``."""
        self.flush()
        return super().get_timestamps(name)

    def get_continuous(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Flush, then return ``(data (n_samples, n_channels), ts (n_samples,))``."""
        self.flush()
        return super().get_continuous(name)

    def get_trials(
        self,
        stream_name: str,
        pre: float = 0.0,
        post: float = 0.0,
        class_names: list[str] | None = None,
    ) -> list[Recording]:
        """Flush, then cut stream ``stream_name`` into one trial per label (see
        :meth:`SessionReader.get_trials <labsession.recording._reader.SessionReader.get_trials>`).
        """
        self.flush()
        return super().get_trials(stream_name, pre, post, class_names)

    # -- finishing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Write everything queued, stop the writer, record in each stream's arrays the rows
        they hold (``labsession.closed_rows`` in their ``zarr.json`` attributes: rows lost from
        their end later read as damage, not as a shorter session), save meta and labels;
        release the folder.

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
            if self._writer.error is None:
                self._record_closed_rows()
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
        if first or self._meta_dirty or self._faults_dirty or self._facts_changed():
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
            else:
                if self._facts_error is not None:  # saved the last valid facts instead
                    self._meta_dirty = True  # the next close writes them once corrected
                    problems.append(f"{self._facts_error}, so meta.json holds the last valid ones")
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

    def _record_closed_rows(self) -> None:
        """Record in each stream's arrays the rows they were closed with: chunks lost from
        their end later then read as damage, not as a shorter session (a crash leaves no such
        record). Not written, with a warning, if the disk refuses it: the session then reads
        as sessions without the record do."""
        for name in self._infos:
            data, ts = self.stores.peek(name), self.ts_stores.peek(name)
            rows = self._writer.n_appended(name)
            if data.shape[0] != rows or ts.shape[0] != rows:  # pragma: no cover - a bug
                log.warning(
                    "%s: stream %r: %d samples written, but its arrays hold %s and %s; the rows "
                    "it was closed with are not recorded",
                    self.path,
                    name,
                    rows,
                    data.shape,
                    ts.shape,
                )
                continue
            try:
                set_closed_rows(data, ts, rows)
            except OSError as exc:
                log.warning(
                    "%s: stream %r: the %d rows it was closed with are not recorded in its "
                    "arrays (%s); rows lost from their end later would read as a shorter session",
                    self.path,
                    name,
                    rows,
                    describe_error(exc),
                )

    def pack_to_zip(self) -> Path:
        """Close, pack the folder into its ``.session.zip``, verify it, remove the folder.

        The zip is ``<folder>.session.zip``, or ``<folder>_<slug>.session.zip`` for a named
        session (:attr:`name`, e.g. ``..._3f9a0c1e_pilot-3.session.zip``); ZIP_STORED, members
        at the archive root, as MyoGestic writes them. It is built beside the folder under a
        temporary name, every member's CRC is read back, and the session is reopened from it to
        check meta, labels and every array's shape. Only then is it renamed into place, and the
        folder removed: renamed aside to ``.<name>.removing`` first, then deleted, so no
        half-deleted folder ever carries the session's name.

        A zip already at that name is replaced (as MyoGestic does: the folder is the source; a
        pack killed before it removed the folder is finished this way) only if it is an earlier
        pack of this recording that the folder holds in full: the same ``meta.json``
        ``created``, no stream, sample, label or file the folder lacks (see
        :func:`~labsession.recording._packed.pack_held_by`). Anything else there (a fuller
        copy of the session, another recording whose folder name matches, an unreadable file)
        is refused: nothing is changed or deleted. A link there is replaced, never followed.
        Once the new zip is in place, earlier packs of this recording under the session's
        other names (``<folder>.session.zip`` and ``<folder>_<slug>.session.zip``, left by a
        pack killed before the session was renamed) are removed if the new zip holds them in
        full, so no window is read twice; others are kept, with a warning.

        On any failure the folder is kept, no partial zip remains and a zip already in place is
        left as it was; what a kill leaves (a temporary zip, a ``.removing`` folder) the next
        :meth:`attach` or pack cleans up. The folder's lock is held throughout.

        Returns
        -------
        Path
            The ``.session.zip``, which is also the new :attr:`path`.

        Raises
        ------
        SessionError
            If writing failed (:attr:`error`: the folder is kept; free space, then
            ``Session.attach(folder).pack_to_zip()``), another process holds the folder, the
            disk fills up while packing, a folder stands where the zip goes, or the zip there
            holds what the folder lacks (naming both paths and what: the folder is kept).
        ArchiveError
            If the folder holds a link or a special file, or the zip does not read back as the
            recording (the folder is kept).
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
            try:
                return self._pack()
            except BaseException:
                self._restore_closed_rows()
                raise
        finally:
            self._lock.release()

    def _restore_closed_rows(self) -> None:
        """After a refused pack of an attached folder: put back the arrays' attributes as
        attach found them (with or without a record of the rows they were closed with), so
        that the folder is as it was found; the next close records the rows again."""
        for name, found in (self._attributes_found or {}).items():
            if self.path.is_dir() and name in self.stores:
                try:
                    for array, attributes in zip(
                        (self.stores.peek(name), self.ts_stores.peek(name)), found, strict=True
                    ):
                        if dict(array.metadata.attributes) != attributes:
                            array.attrs.put(copy.deepcopy(attributes))
                except OSError as exc:
                    log.warning(
                        "%s: stream %r: its record of the rows it was closed with is not put "
                        "back (%s)",
                        self.path,
                        name,
                        describe_error(exc),
                    )

    def _pack(self) -> Path:
        n_samples = {name: self.n_samples(name) for name in self._infos}
        folder = self.path
        zip_path = packed_zip_path(folder, self._name)
        clean_pack_temp_files(folder)
        if zip_path.name != folder.name + ZIP_SUFFIX:
            clean_pack_temp_files(folder, zip_path)
        clean_removal_leftovers(folder.parent)
        replaced = os.path.lexists(zip_path)
        self._check_replaceable(folder, zip_path)  # fails early, before the zip is written

        def check(packed: Path) -> None:
            self._verify_packed(packed, n_samples)
            self._check_replaceable(packed, zip_path)  # again: it may have come meanwhile

        try:
            pack_folder(folder, zip_path, check)
        except OSError as exc:
            kept = f" and {zip_path.name} as it was" if replaced else ""
            raise SessionError(
                f"{folder}: packing into {zip_path.name} failed ({describe_error(exc)}); "
                f"the folder is kept{kept}"
            ) from exc
        if replaced:
            log.info("%s: replaced by a new pack of %s", zip_path, folder.name)
        remove_earlier_packs(folder, zip_path)
        remove_folder_aside(folder)
        self.stores.clear()
        self.ts_stores.clear()
        self._packed = self.path = zip_path
        log.info("packed %s (%d streams, %d labels)", zip_path, len(n_samples), len(self._labels))
        return zip_path

    def _verify_packed(self, zip_path: Path, n_samples: dict[str, int]) -> None:
        verify_packed(zip_path, self._infos, n_samples, self._labels)

    def _check_replaceable(self, source: Path, zip_path: Path) -> None:
        """Refuse to pack onto a regular file ``zip_path`` that ``source`` (the folder, or the
        new zip made from it) does not hold in full; a link or nothing there is fine."""
        if not is_regular_file(zip_path):
            return
        problem = pack_held_by(source, zip_path)
        if problem is not None:
            raise SessionError(
                f"{self.path}: not packed, because {zip_path} is in the way: it {problem}; "
                "nothing was changed or deleted (move that zip or the folder elsewhere to keep "
                "both, or remove the one not wanted)"
            )

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "packed" if self._packed else "closed" if self._closed else "recording"
        if self.error is not None and not self._packed:
            state += ", failed"
        named = f", name={self._name!r}" if self._name is not None else ""
        return f"Session({str(self.path)!r}, {state}{named}, streams={self.stream_names})"

    # -- recovery ------------------------------------------------------------------------------
    @classmethod
    def attach(cls, folder: str | os.PathLike[str], *, buffer_seconds: float = 30.0) -> Session:
        """Re-open a session folder left unfinished (a crash, a full disk) to finish and pack it.

        Takes the folder's lock; removes temporary files of interrupted writes and of an
        interrupted pack of this session, and the leftovers of interrupted folder removals in
        the same base folder whose zip is whole; trims every stream to the samples written
        whole (readable, with finite timestamps), logging what was cut; keeps the ``meta.json``
        entries of the earlier run (``write_errors``, ``integrity``, and keys of other writers),
        and takes over its ``name``, ``extras`` and ``control_space``. Returns a writable
        session: call :meth:`pack_to_zip` (or keep appending). A stream that was closed
        cleanly is never trimmed: its record of the rows it was closed with
        (``labsession.closed_rows`` in its arrays' ``zarr.json``) is checked, then removed
        until the next close writes it again, so that rows can be appended.

        Raises
        ------
        SessionError
            If ``folder`` is not an unpacked session folder, if another live process holds it
            (naming its process id and host), if a stream closed cleanly holds fewer rows than
            it was closed with (chunks lost from its end: naming the array and the rows
            expected and found; nothing is changed), or if the disk refuses the repaired files.
        """
        session = attach_folder(cls, Path(folder), buffer_seconds=buffer_seconds)
        session._adopt_facts()
        return session
