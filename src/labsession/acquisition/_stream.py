"""A named stream: one acquisition thread reading a source into a ring buffer and a session."""

from __future__ import annotations

import logging
import math
import numbers
import threading
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike

from labsession.acquisition._health import SILENT_S, StreamHealth
from labsession.acquisition._ring import RingBuffer
from labsession.core.clock import local_clock
from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo
from labsession.sources import Source, source_factories

__all__ = ["Stream"]

log = logging.getLogger(__name__)

_SOURCE_METHODS = ("connect", "read", "close")


def _positive_seconds(name: str, value: object) -> float:
    """``value`` as a finite number of seconds > 0, else a ``ValueError`` naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _as_source(source: object, stream: str) -> Source:
    """``source`` itself, or the source a registered name makes (its factory with no arguments).

    Raises
    ------
    ValueError
        For a name no source is registered under, or whose factory needs arguments.
    TypeError
        For a source class (not an object), or anything else that is not a source
        (``connect``, ``read`` and ``close`` methods).
    """
    if isinstance(source, str):
        factories = source_factories()
        factory = factories.get(source)
        if factory is None:
            raise ValueError(
                f"stream {stream!r}: no source is registered as {source!r} (registered: "
                f"{', '.join(sorted(factories))}); pass a source object, e.g. "
                f"SyntheticSource(n_channels=8, fs=2048.0) or LSLSource('Quattrocento')"
            )
        try:
            made = factory()
        except TypeError as exc:
            raise ValueError(
                f"stream {stream!r}: source {source!r} needs arguments ({exc}); pass the source "
                f"object instead, e.g. LSLSource('Quattrocento') from labsession.sources"
            ) from exc
        return _as_source(made, stream)
    if isinstance(source, type):
        raise TypeError(
            f"stream {stream!r}: source must be a source object, got the class "
            f"{source.__name__}; make one: {source.__name__}(...)"
        )
    missing = [m for m in _SOURCE_METHODS if not callable(getattr(source, m, None))]
    if missing:
        raise TypeError(
            f"stream {stream!r}: source must be a labsession.sources.Source (or a registered "
            f"source name), got {source!r} (type {type(source).__name__}, without "
            f"{', '.join(missing)})"
        )
    return source  # type: ignore[return-value]


def _whole_samples(seconds: float, fs: float) -> int:
    """Samples in ``seconds`` at ``fs`` Hz, rounded, at least one (a window shorter than half
    a sample period is still one sample: never an empty "whole" window)."""
    return max(1, round(seconds * fs))


class Stream:
    """A source, the latest ``window_seconds`` of its samples, and (while recording) a session.

    Parameters
    ----------
    name
        Name of the stream in the session (``<name>.zarr``).
    source
        Where the samples come from (:class:`~labsession.sources.Source`), or the name it is
        registered under (:func:`~labsession.sources.register_source`), made with its factory's
        defaults: ``"synthetic"`` is ``SyntheticSource()``.
    window_seconds
        Length of :meth:`get_window` and of the ring buffer's history (kept x2), in seconds
        (finite, > 0).
    connect_retry
        Seconds between connection attempts while the source cannot connect (finite, > 0).

    Raises
    ------
    ValueError
        For a bad stream name, a ``window_seconds`` or ``connect_retry`` that is not a finite
        number > 0, a source name not registered, or one whose factory needs arguments
        (``"lsl"``: pass ``LSLSource(name)``).
    TypeError
        For a source class instead of an object, or what is no source (no ``connect``,
        ``read`` and ``close`` methods).

    Attributes
    ----------
    health
        Live counters (:class:`~labsession.acquisition.StreamHealth`): samples, nominal and
        effective rate, gaps, dropped samples, backwards timestamps, disconnects, source errors.
    append_errors
        Chunks the attached session refused (its disk failed: the session counts the samples
        as lost; or a chunk it could not take): acquisition goes on regardless, into the ring
        buffer, the live view and the pipelines.
    append_error
        The latest of those errors, or None.

    Notes
    -----
    While a session is attached, source errors, disconnects and reconnections are also noted in
    it (:meth:`Session.record_fault <labsession.recording.Session.record_fault>`), with their
    time on the LSL clock, for its ``meta.json``.
    """

    #: Longest wait (s) between retries of a source whose ``read`` keeps raising.
    max_error_backoff = 2.0
    #: Longest wait (s) of :meth:`detach_session` for a ``read`` in progress when it is called,
    #: whose samples then go into the session: a read takes at most the source's
    #: ``poll_interval`` (10 ms by default) unless the source is reconnecting, which is not
    #: waited for longer than this.
    detach_wait = 0.25

    def __init__(
        self,
        name: str,
        source: Source | str,
        window_seconds: float = 1.0,
        *,
        connect_retry: float = 1.0,
    ):
        from labsession.recording._layout import check_stream_name

        self.name = check_stream_name(name)
        self.window_seconds = _positive_seconds("window_seconds", window_seconds)
        self.connect_retry = _positive_seconds("connect_retry", connect_retry)
        self.source = _as_source(source, self.name)
        self.info: StreamInfo | None = None
        self.ring: RingBuffer | None = None
        self._session: Session | None = None
        self._on_append_error: Callable[[Session, BaseException], None] | None = None
        self._session_lock = threading.Lock()
        #: Signals the end of each read's hand-over to the session (``_reading_for`` cleared).
        self._handed_over = threading.Condition(self._session_lock)
        #: The session attached when the read in progress began (None: none, or given up).
        self._reading_for: Session | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.error: BaseException | None = None
        self.health = StreamHealth()
        self.append_errors = 0
        self.append_error: BaseException | None = None
        self._failed_session: Session | None = None  # the session whose failure was logged
        self._reported_session: Session | None = None  # ... whose SessionError went to on_error

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the acquisition thread (it connects the source, retrying until it succeeds)."""
        if self._thread is not None and self._thread.is_alive():
            return
        # A restart connects again: the source may come back with another layout.
        self._connected.clear()
        self.info = self.ring = None
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"labsession-acq-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the source (a connect still waiting is interrupted)."""
        self._stop.set()
        interrupt = getattr(self.source, "interrupt", None)  # a source not subclassing Source
        if interrupt is not None:
            interrupt()
        if self._thread is not None:
            self._thread.join(timeout)
        self.source.close()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the source has connected (``info`` is set); False on timeout."""
        return self._connected.wait(timeout)

    @property
    def n_samples(self) -> int:
        """Samples read from the source since the stream started (``health.n_samples``)."""
        return self.health.n_samples

    @property
    def connected(self) -> bool:
        """True once the source has connected."""
        return self._connected.is_set()

    # -- session -------------------------------------------------------------------------------
    def attach_session(
        self,
        session: Session,
        *,
        on_error: Callable[[Session, BaseException], None] | None = None,
    ) -> None:
        """Append every sample read from now on to ``session`` (stream must be connected).

        ``on_error(session, exc)`` is called on the acquisition thread the first time the
        session refuses a chunk with :class:`~labsession.errors.SessionError` (a failed disk); it
        must be quick and must not wait for the session. The :class:`App` uses it to go to
        state ``"error"``.
        """
        if self.info is None:
            raise RuntimeError(f"stream {self.name!r} is not connected")
        with self._session_lock:
            self._session, self._on_append_error = session, on_error
            if not self.health.connected:  # its reconnection, later, ends this one
                self._note(session, "disconnected", "not delivering when the recording started")

    def detach_session(self) -> Session | None:
        """Stop appending; returns once the samples of the read in progress (if any) have been
        handed to the session, so that no sample read before the call is lost.

        A read that began while the session was attached is waited for, up to
        :attr:`detach_wait` s (a read normally returns within the source's ``poll_interval``):
        its samples go into the session. One that takes longer (a source reconnecting) is not
        waited for, and its samples, read after the call, are not recorded. Reads that begin
        after the call are never recorded.

        A source still connected but silent for more than :data:`SILENT_S` (a device that
        stopped sending without closing) is noted in the session as disconnected from its
        last sample on: its integrity record shows the end of the take without data.
        """
        with self._handed_over:
            session, self._session = self._session, None
            if session is not None and self._reading_for is session:
                deadline = time.monotonic() + self.detach_wait
                while self._reading_for is session:
                    left = deadline - time.monotonic()
                    if left <= 0:  # given up: what that read returns is not recorded
                        self._reading_for = None
                        break
                    self._handed_over.wait(left)
            if self._session is None:  # (no other session attached while it waited)
                self._on_append_error = None
            age = self.health.last_sample_age()
            silent = (
                session is not None
                and self.health.connected
                and (age or 0.0) > self._silence_threshold()
            )
            if silent:
                self._note(
                    session,
                    "disconnected",
                    f"no sample for {age:.1f} s when the recording stopped (the source "
                    f"stopped sending)",
                    at=local_clock() - age,
                )
        return session

    def _silence_threshold(self) -> float:
        """Seconds without a sample that mean the source stopped sending: :data:`SILENT_S`, or
        3 of its sample periods or of its usual gaps between chunks if longer."""
        periods = [SILENT_S]
        if self.info is not None:
            periods.append(3.0 / self.info.fs)
        interval = self.health.arrival_interval()
        if interval is not None:
            periods.append(3.0 * interval)
        return max(periods)

    # -- reading -------------------------------------------------------------------------------
    def window_samples(self, seconds: float | None = None) -> int:
        """Samples in a whole window of ``seconds`` (default ``window_seconds``) at the source's
        rate: the length :meth:`get_window` returns once the stream has read that many.

        Raises
        ------
        RuntimeError
            If the source has not connected yet.
        """
        if self.info is None:
            raise RuntimeError(f"stream {self.name!r} is not connected yet")
        return _whole_samples(seconds or self.window_seconds, self.info.fs)

    def get_window(
        self, seconds: float | None = None, *, dtype: DTypeLike | None = np.float32
    ) -> tuple[np.ndarray, np.ndarray]:
        """The latest ``seconds`` (default ``window_seconds``) of samples, channels first.

        Parameters
        ----------
        seconds
            Length of the window (s); fewer samples while the stream has not read that many.
        dtype
            Type of ``data``: float32 by default, whatever the stream's dtype (as MyoGestic's
            ``get_window``, so a predict function sees one type); ``None`` keeps the stream's
            own dtype (an ``int32`` sample counter stays exact, float32 holds integers
            exactly only up to 2**24).

        Returns
        -------
        data : ndarray, shape (n_channels, n)
            A new array (never overwritten by later samples).
        ts : ndarray, shape (n,)
            Their timestamps, float64 seconds.

        Raises
        ------
        RuntimeError
            If the source has not connected yet.
        """
        if self.ring is None or self.info is None:
            raise RuntimeError(f"stream {self.name!r} is not connected yet")
        data, ts = self.ring.latest(self.window_samples(seconds))
        window = data.T
        if dtype is not None:
            window = window.astype(dtype, copy=False)
        return window, ts

    # -- thread --------------------------------------------------------------------------------
    def _connect(self) -> bool:
        while not self._stop.is_set():
            try:
                info = self.source.connect()
            except Exception as exc:  # noqa: BLE001 - keep trying; the app goes on
                if self._stop.is_set():  # interrupted by stop(): nothing to retry
                    return False
                log.warning("stream %r: source not connected yet (%s); retrying", self.name, exc)
                self._stop.wait(self.connect_retry)
                continue
            # Rounded as window_samples rounds: a window of up to 2 * window_seconds always fits
            # (int() dropped the last sample of 2 * 0.1 s at 2048 Hz, or of 2 * 0.29 s at 100 Hz).
            capacity = _whole_samples(2 * self.window_seconds, info.fs)
            self.ring = RingBuffer(capacity, info.n_channels, info.dtype)
            self.health.on_connected(info.fs)  # before info is seen: a recording started now
            self.info = info  # finds the stream delivering, not a disconnect to note
            self._connected.set()
            return True
        return False

    def _run(self) -> None:
        if not self._connect():
            return
        try:
            self._acquire()
        except Exception as exc:
            log.exception("stream %r: acquisition stopped", self.name)
            self.error = exc
            self.health.on_stopped(exc)
            self._record_fault("acquisition_stopped", f"{type(exc).__name__}: {exc}")

    def _acquire(self) -> None:
        try:
            self._read_loop()
        finally:
            self._hand_over_done()  # a detach never waits for a read that will not come

    def _read_loop(self) -> None:
        assert self.ring is not None
        backoff = 0.0
        while not self._stop.is_set():
            # The session attached now gets what this read returns, even if it is detached
            # meanwhile: detach_session waits for the hand-over (a bounded wait), never for the
            # read under a lock (an LSL source may take long to reconnect).
            with self._session_lock:
                self._reading_for = self._session
            try:
                chunk = self.source.read()
            except Exception as exc:  # noqa: BLE001 - a flaky device must not end acquisition
                self.error = exc
                self.health.on_source_error(exc)
                self._record_fault("source_error", f"{type(exc).__name__}: {exc}")
                backoff = min(self.max_error_backoff, max(0.05, 2 * backoff))
                log.warning(
                    "stream %r: source read failed (%s: %s); retrying in %.2f s",
                    self.name,
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                self._hand_over_done()
                self._stop.wait(backoff)
                continue
            backoff = 0.0
            self._track_source_state()
            if chunk is None:
                self._hand_over_done()
                continue
            data, ts = chunk
            self.ring.write(data, ts)
            self.health.on_chunk(ts)
            self._append_to_session(data, ts)

    def _hand_over_done(self) -> None:
        """The read in progress is handed over (or returned nothing): wake a waiting detach."""
        with self._handed_over:
            if self._reading_for is not None:
                self._reading_for = None
                self._handed_over.notify_all()

    def _append_to_session(self, data: np.ndarray, ts: np.ndarray) -> None:
        """Hand a chunk to the session attached when its read began (also if it was detached
        meanwhile: its detach waits for it), else to the one attached now; its failure never
        stops acquisition."""
        with self._handed_over:
            # The session the read began for, even if another was attached while its detach
            # waited: that detach hands it this read; else (no session then, or given up) the
            # session attached now.
            session = self._reading_for if self._reading_for is not None else self._session
            self._reading_for = None
            self._handed_over.notify_all()  # woken once the lock is let go: after the append
            if session is None:
                return
            try:
                session.append(self.name, data, ts)
            except Exception as exc:  # noqa: BLE001 - counted, logged once per session, noted
                self.append_errors += 1
                self.append_error = exc
                if session.error is None:  # not a failed disk (that one counts its losses)
                    message = f"{data.shape[0]} samples not recorded: {type(exc).__name__}: {exc}"
                    self._note(session, "append_error", message)
                if self._failed_session is not session:
                    self._failed_session = session
                    log.error(
                        "stream %r: samples are not recorded into %s (%s); acquisition goes on",
                        self.name,
                        session.path,
                        exc,
                    )
                if isinstance(exc, SessionError) and self._reported_session is not session:
                    self._reported_session = session
                    self._report_append_error(session, exc)

    def _report_append_error(self, session: Session, exc: BaseException) -> None:
        if self._on_append_error is not None:
            try:
                self._on_append_error(session, exc)
            except Exception:
                log.exception("stream %r: the append-error callback failed", self.name)

    def _record_fault(self, kind: str, message: str) -> None:
        """Note a fault in the session the read in progress is for, else in the attached one
        (if any; no disk access)."""
        with self._session_lock:
            session = self._reading_for if self._reading_for is not None else self._session
            if session is not None:
                self._note(session, kind, message)

    def _note(self, session: Session, kind: str, message: str, *, at: float | None = None) -> None:
        try:
            session.record_fault(self.name, kind, local_clock() if at is None else at, message)
        except Exception:
            log.exception("stream %r: could not note a %s in %s", self.name, kind, session.path)

    def _track_source_state(self) -> None:
        """Mirror a source's ``state`` attribute (LSLSource has one) into :attr:`health`."""
        state = getattr(self.source, "state", None)
        if state == "disconnected":
            if self.health.connected:
                self._record_fault("disconnected", "the source stopped delivering")
            self.health.on_disconnected()
        elif state == "connected" and not self.health.connected and self.info is not None:
            self._record_fault("reconnected", "the source delivers again")
            self.health.on_connected(self.info.fs)
