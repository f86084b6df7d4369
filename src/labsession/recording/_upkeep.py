"""A session's own files kept current while it records: ``meta.json``, ``labels.json``.

:class:`SessionUpkeep` is the part of :class:`~labsession.recording.Session` that writes them:
the label track (on disk before :meth:`~SessionUpkeep.add_label` returns), the session's name and
facts (``name``, ``extras``, ``control_space``), each stream's integrity record and faults, and
the write errors (a full disk). The writer thread calls :meth:`~SessionUpkeep._housekeeping`
after each batch, so ``meta.json`` follows within seconds whatever changed, and a write that
failed is retried as soon as the disk takes data again.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from labsession.core.clock import local_clock
from labsession.errors import SessionError
from labsession.recording._facts import check_session_name, encode_facts
from labsession.recording._incidents import WriteErrors
from labsession.recording._integrity import IntegrityTracker
from labsession.recording._integrity_record import StreamIntegrity
from labsession.recording._layout import build_meta, write_labels, write_meta
from labsession.recording._live import LiveArrays
from labsession.recording._reader import SessionReader
from labsession.recording._records import LabelEvent
from labsession.recording._schema import (
    MAX_LABELS,
    FieldError,
    check_str,
    check_str_list,
    shown,
)
from labsession.recording._writer import LostSamples, SessionWriter

__all__ = ["SessionUpkeep", "checked_app_name", "checked_class_names"]

log = logging.getLogger(__name__)

#: Shortest time (s) between two housekeeping writes of the writer thread while recording
#: (recorded faults into ``meta.json``, labels that could not be written).
_HOUSEKEEPING_S = 1.0
#: Longest time (s) the ``integrity`` entry of ``meta.json`` lags behind while recording.
_INTEGRITY_S = 5.0

#: ``(extras, control_space)`` as JSON values.
_Facts = tuple[dict[str, Any], Any]


def checked_app_name(value: object, where: str) -> str:
    """``value`` if ``meta.json`` can hold it as ``app_name``: text of valid Unicode (None,
    which the readers take for no name, is ``""``).

    Raises
    ------
    SessionError
        ``where`` (e.g. ``"<folder>: meta.json: "``), then the key and the value found.
    """
    if value is None:
        return ""
    try:
        return check_str(value, "app_name")
    except FieldError as exc:
        raise SessionError(f"{where}{exc}") from None


def checked_class_names(value: object, where: str) -> list[str]:
    """``value`` as a new list if ``meta.json`` can hold it as ``class_names``: a sequence of
    text of valid Unicode (``class_names[i]`` names class ``i``).

    A string is refused rather than split into characters (``"Rest,Fist"`` would be nine
    classes), and so are numbers (``range(3)`` gives no names: give ``["0", "1", "2"]``).

    Raises
    ------
    SessionError
        ``where`` (e.g. ``"<folder>: meta.json: "``), then the key and the value found, e.g.
        ``class_names[0] must be a string, got 0``.
    """
    if isinstance(value, str | bytes):
        raise SessionError(
            f"{where}class_names must be a list of strings, got the string {shown(value)}: "
            "give a list, one name per class, e.g. ['Rest', 'Fist']"
        )
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:
        raise SessionError(
            f"{where}class_names must be a list of strings, got {shown(value)}"
        ) from None
    try:
        return check_str_list(items, "class_names")
    except FieldError as exc:
        raise SessionError(f"{where}{exc}") from None


class SessionUpkeep(SessionReader):
    """``meta.json`` and ``labels.json`` of a session being recorded, kept current.

    The base of :class:`~labsession.recording.Session`, which adds the streams, their writer and
    the session's life (close, pack, attach); see there.

    Parameters
    ----------
    folder
        The session folder (it exists).
    app_name, class_names
        As :class:`~labsession.recording.Session` takes them.
    name
        The session's name, already checked.
    facts
        ``(extras, control_space)``: the caller's values, and their JSON form (checked).
    """

    stores: LiveArrays
    ts_stores: LiveArrays
    _writer: SessionWriter

    def __init__(
        self,
        folder: Path,
        *,
        app_name: str,
        class_names: Sequence[str] | None,
        name: str | None,
        facts: tuple[Mapping[str, Any], Any, _Facts],
    ):
        self.path = folder
        self.app_name = app_name
        self.class_names = class_names
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._infos = {}
        self._labels: list[LabelEvent] = []
        self._label_lock = threading.Lock()
        self._meta_lock = threading.Lock()
        self._closed = False
        self._packed: Path | None = None
        self._errors = WriteErrors(folder)
        self._integrity: dict[str, IntegrityTracker] = {}
        self._faults_dirty = False  # a fault was recorded since meta.json was last written
        self._integrity_due = 0.0
        self._extra_meta: dict[str, Any] = {}  # keys of an earlier writer's meta.json, kept
        self._meta_dirty = False  # meta.json lags: a write failed, or the name or a fact changed
        self._labels_dirty = False  # a labels.json write failed
        self._housekeeping_due = 0.0
        self._name = name
        extras, self._control_space, encoded = facts
        self._extras = dict(extras)
        self._good_facts: _Facts = encoded  # the latest facts that are valid JSON
        self._facts_on_disk: _Facts | None = None  # those in meta.json
        self._facts_error: str | None = None  # why the current facts are not JSON, or None

    # -- what meta.json says -------------------------------------------------------------------
    @property
    def app_name(self) -> str:
        """The recording program's name, ``meta.json`` ``app_name``.

        Assigning checks it (text of valid Unicode, or :class:`~labsession.errors.SessionError`
        naming the value); the change reaches ``meta.json`` within seconds while recording, and
        at :meth:`save_meta` and :meth:`close`.
        """
        return self._app_name

    @app_name.setter
    def app_name(self, value: str) -> None:
        self._app_name = checked_app_name(value, f"{self.path}: meta.json: ")
        self._meta_dirty = True

    @property
    def class_names(self) -> list[str]:
        """Names of the label classes (``class_names[i]`` names class ``i``), ``meta.json``
        ``class_names``; ``[]`` without any.

        Assigning checks them (a list or tuple of text; a plain string, numbers or a lone
        surrogate raise :class:`~labsession.errors.SessionError` naming the value); None
        means no names (the key is left out of ``meta.json``).
        """
        return self._class_names

    @class_names.setter
    def class_names(self, value: Sequence[str] | None) -> None:
        if value is None:
            self._class_names, self._has_class_names = [], False
        else:
            self._class_names = checked_class_names(value, f"{self.path}: meta.json: ")
            self._has_class_names = True
        self._meta_dirty = True

    # -- name and facts ------------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        """The session's name, or None: ``meta.json`` ``name``, and, as a slug, the zip's file
        name (``<folder>_<slug>.session.zip``). Can change until :meth:`pack_to_zip`."""
        return self._name

    @name.setter
    def name(self, value: str | None) -> None:
        self._check_not_packed("name")
        self._name = check_session_name(value)
        self._meta_dirty = True

    @property
    def extras(self) -> dict[str, Any]:
        """JSON facts about the session (e.g. a force calibration), ``meta.json`` ``extras``.

        A dict: assign a new one or change its entries (``session.extras["force"] = {...}``).
        Values are JSON values or NumPy numbers and arrays (saved as numbers and lists).
        Changes reach ``meta.json`` within seconds while recording, and at :meth:`save_meta`,
        :meth:`close` and :meth:`pack_to_zip`. Assigning a value that is not JSON raises
        :class:`~labsession.errors.SessionError` naming its key, and so does :meth:`save_meta`
        after such a change; :meth:`close` then saves the last valid facts and raises.
        """
        return self._extras

    @extras.setter
    def extras(self, value: Mapping[str, Any]) -> None:
        self._check_not_packed("extras")
        self._good_facts = self._encode(value, self._control_space)
        self._extras = dict(value)
        self._meta_dirty = True

    @property
    def control_space(self) -> Any:
        """What the session's controls mean (any JSON value; ``meta.json`` ``control_space``,
        as MyoGestic's ``save_meta(..., control_space=...)`` writes it), or None."""
        return self._control_space

    @control_space.setter
    def control_space(self, value: Any) -> None:
        self._check_not_packed("control_space")
        self._good_facts = self._encode(self._extras, value)
        self._control_space = value
        self._meta_dirty = True

    def _encode(self, extras: Mapping[str, Any], control_space: Any) -> _Facts:
        try:
            return encode_facts(extras, control_space)
        except SessionError as exc:
            raise SessionError(f"{self.path}: {exc}") from None

    def _facts(self, *, strict: bool) -> _Facts:
        """The facts as JSON; if they are not JSON, raise (``strict``) or log and return the
        last valid ones."""
        try:
            facts = self._encode(self._extras, self._control_space)
        except Exception as exc:  # SessionError, or extras changed while read (another thread)
            if strict:
                raise
            if str(exc) != self._facts_error:
                log.warning("%s; meta.json keeps the last valid extras and control_space", exc)
            self._facts_error = str(exc)
            return self._good_facts
        self._good_facts, self._facts_error = facts, None
        return facts

    def _facts_changed(self) -> bool:
        """Whether the facts differ from those in ``meta.json`` (or are not JSON)."""
        try:
            return self._encode(self._extras, self._control_space) != self._facts_on_disk
        except Exception:  # noqa: BLE001 - not JSON: the write that follows says why
            return True

    def _adopt_facts(self) -> None:
        """Take the name and facts of an earlier run's ``meta.json`` (kept in ``_extra_meta``
        by an attach) as this session's own."""
        extra = self._extra_meta
        name = extra.pop("name", None)
        self._name = name if isinstance(name, str) else None
        extras, control_space = extra.get("extras") or {}, extra.get("control_space")
        try:
            facts = self._encode(extras, control_space)
        except SessionError as exc:  # kept in meta.json as found, not taken over
            log.warning("%s; they stay in meta.json as found", exc)
            return
        extra.pop("extras", None)
        extra.pop("control_space", None)
        self._extras, self._control_space = dict(extras), control_space
        self._good_facts = self._facts_on_disk = facts

    # -- labels and faults ---------------------------------------------------------------------
    def add_label(self, class_index: int, timestamp: float | None = None) -> LabelEvent:
        """Add a label (``timestamp`` defaults to the LSL clock now); on disk before returning.

        If ``labels.json`` cannot be written (a full disk), the label is added and returned all
        the same: it stays in memory and is written with the next label, by the writer thread
        (within about a second of the disk taking data again) or at :meth:`close`. The failure
        is reported through :attr:`error` and the error listeners.

        Raises
        ------
        SessionError
            Naming the value, for a label ``labels.json`` could not hold: a ``class_index``
            outside ``[-1, 2**31 - 1]`` or not an integer, a timestamp that is not a finite
            number, or a label beyond the 50,000 a session may hold. Nothing is added then.
        """
        self._check_open()
        try:
            event = LabelEvent(local_clock() if timestamp is None else timestamp, class_index)
        except SessionError as exc:
            raise SessionError(f"{self.path}: labels.json: {exc}; the label is not added") from None
        with self._label_lock:
            if len(self._labels) >= MAX_LABELS:
                raise SessionError(
                    f"{self.path}: labels.json: the session has {MAX_LABELS} labels, the most "
                    f"its readers accept; label {event} is not added (start a new session)"
                )
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

    # -- meta.json -----------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        extras, control_space = self._facts(strict=False)
        meta = build_meta(
            app_name=self.app_name,
            created=self.created,
            streams=dict(self._infos),
            class_names=self.class_names if self._has_class_names else None,
            name=self._name,
            extras=extras,
            control_space=control_space,
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

    def _write_meta(self, *, strict: bool = False) -> None:
        """Write ``meta.json`` (raises ``OSError``; with ``strict``, :class:`SessionError` for
        facts that are not JSON, before anything is written)."""
        with self._meta_lock:
            if strict:
                self._facts(strict=True)  # raises before anything changes
            # Cleared before the content is read: what changes meanwhile marks it again.
            self._faults_dirty = self._meta_dirty = False
            self._integrity_due = time.monotonic() + _INTEGRITY_S
            try:
                meta = self._meta()
                facts = self._good_facts
                write_meta(self.path, meta)
            except BaseException:
                self._meta_dirty = True
                raise
            self._facts_on_disk = facts

    def _save_meta_or_raise(self, *, strict: bool = False) -> None:
        try:
            self._write_meta(strict=strict)
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
        quick and must not wait for this session (no :meth:`flush`, :meth:`close`, nor
        ``stores[name]``).
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
        """Writer thread, after a write: retry labels, write recorded faults and changed facts
        (at most 1/s), and the integrity record (at least every :data:`_INTEGRITY_S` s)."""
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

    # -- state checks --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise SessionError(f"{self.path}: session is closed")

    def _check_not_packed(self, what: str) -> None:
        if self._packed is not None:
            raise SessionError(f"{self.path}: session is packed; its {what} cannot change")
