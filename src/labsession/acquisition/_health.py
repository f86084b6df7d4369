"""Per-stream health counters: what a user needs to trust a live recording.

The counting (samples, gaps, backward stamps, disconnects, source errors) is the recording
layer's :class:`~labsession.recording._integrity.IntegrityTracker`, the same that writes a
session's ``integrity`` record; this module adds what only a live stream has: whether it is
connected now, the rate of arrivals over the last seconds, and the age of the latest chunk.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from labsession.core.clock import local_clock
from labsession.recording._integrity import IntegrityTracker, StreamIntegrity

__all__ = ["StreamHealth", "StreamHealthSnapshot"]

#: Seconds of arrivals over which the effective rate is measured (at least the last
#: ``MIN_ARRIVALS`` chunks are kept, for sources that deliver rarely).
RATE_WINDOW_S = 2.0
#: Seconds without a sample after which a stream still connected counts as having stopped
#: sending when a recording stops (noted in the session as a disconnect from its last sample);
#: longer for a source whose samples or chunks come further apart (3 of its periods).
SILENT_S = 2.0
MIN_ARRIVALS = 3


@dataclass(frozen=True)
class StreamHealthSnapshot:
    """A consistent copy of a stream's health counters (see :class:`StreamHealth`).

    Attributes
    ----------
    connected
        True while the source delivers (False before it connects and while it is disconnected).
    n_samples
        Samples received since the stream started.
    nominal_rate
        The rate the source declares (Hz); 0 before it connects.
    effective_rate
        Samples per second actually received over the last ``RATE_WINDOW_S`` seconds (Hz).
    n_gaps
        Timestamp jumps longer than ``GAP_PERIODS`` (3) sample periods and ``GAP_MIN_S``
        (20 ms): see :mod:`labsession.recording._integrity`.
    dropped_samples
        Samples missing in those jumps (``round(jump * nominal_rate) - 1`` each).
    n_backwards
        Timestamps earlier than the one before them.
    n_disconnects
        Times the source went from connected to disconnected.
    n_source_errors
        Exceptions raised by the source's ``read`` (each one retried with backoff).
    last_error
        ``"TypeName: message"`` of the latest source error, or None.
    last_sample_age
        Seconds since the latest chunk arrived (``None`` before the first one).
    gap_seconds
        Total length of the gaps (s).
    last_gap
        ``(start, end)`` LSL times of the latest gap, or None.
    max_backward_s
        The largest backward step of the timestamps (s; 0 if none).
    integrity
        The full record the counters come from (the form a session saves in ``meta.json``),
        counted since the stream started.
    """

    connected: bool
    n_samples: int
    nominal_rate: float
    effective_rate: float
    n_gaps: int
    dropped_samples: int
    n_backwards: int
    n_disconnects: int
    n_source_errors: int
    last_error: str | None
    last_sample_age: float | None
    gap_seconds: float = 0.0
    last_gap: tuple[float, float] | None = None
    max_backward_s: float = 0.0
    integrity: StreamIntegrity | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict of the counters."""
        return asdict(self)


class StreamHealth:
    """Counters of one stream, updated by its acquisition thread as samples arrive.

    The acquisition thread calls :meth:`on_chunk`, :meth:`on_connected`, :meth:`on_disconnected`,
    :meth:`on_source_error` and :meth:`on_stopped`; any thread reads :meth:`snapshot`. The counts
    come from an :class:`~labsession.recording._integrity.IntegrityTracker` (:attr:`tracker`),
    the class that also writes each session's ``integrity`` record, so the panel and the saved
    record count by the same rules; each update costs a few numpy passes over the chunk's
    timestamps, once, as it arrives. Times of disconnects and errors are on the LSL clock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The counts since the stream started (never repairs: it only observes the stamps).
        self.tracker = IntegrityTracker(0.0, repair=False)
        self._connected = False
        self._last_arrival: float | None = None
        self._arrivals: deque[tuple[float, int]] = deque()
        self._arrived = 0  # samples in self._arrivals

    # -- updates (acquisition thread) ---------------------------------------------------------
    def on_connected(self, nominal_rate: float) -> None:
        """The source connected (or reconnected) at ``nominal_rate`` Hz."""
        self.tracker.set_nominal_fs(nominal_rate)
        self.tracker.on_reconnect(local_clock())
        with self._lock:
            self._connected = True

    def on_disconnected(self) -> None:
        """The source stopped delivering (counted once per connected -> disconnected change)."""
        with self._lock:
            was, self._connected = self._connected, False
        if was:
            self.tracker.on_disconnect(local_clock())

    def on_stopped(self, exc: BaseException) -> None:
        """Acquisition ended for good on ``exc``: disconnected, the error kept."""
        with self._lock:
            self._connected = False
        self.tracker.on_source_error(
            local_clock(), f"acquisition stopped: {type(exc).__name__}: {exc}"
        )

    def on_source_error(self, exc: BaseException) -> None:
        """The source's ``read`` raised ``exc``."""
        self.tracker.on_source_error(local_clock(), f"{type(exc).__name__}: {exc}")

    def on_chunk(self, ts: np.ndarray, now: float | None = None) -> None:
        """Count a chunk of samples with timestamps ``ts (n,)`` (seconds) arriving at ``now``."""
        n = int(ts.shape[0])
        if n == 0:
            return
        now = time.monotonic() if now is None else now
        self.tracker.on_chunk(ts)
        with self._lock:
            self._last_arrival = now
            self._arrivals.append((now, n))
            self._arrived += n
            self._forget_before(now - RATE_WINDOW_S)

    def _forget_before(self, t: float) -> None:
        while len(self._arrivals) > MIN_ARRIVALS and self._arrivals[0][0] < t:
            self._arrived -= self._arrivals.popleft()[1]

    # -- reading (any thread) -----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while the source delivers."""
        return self._connected

    @property
    def n_samples(self) -> int:
        """Samples received since the stream started."""
        return self.tracker.n_samples

    def last_sample_age(self, now: float | None = None) -> float | None:
        """Seconds since the latest chunk arrived (None before the first); cheap, no lock."""
        arrival = self._last_arrival
        if arrival is None:
            return None
        return max(0.0, (time.monotonic() if now is None else now) - arrival)

    def arrival_interval(self) -> float | None:
        """Mean seconds between the latest chunk arrivals (None before two arrived)."""
        with self._lock:
            if len(self._arrivals) < 2:
                return None
            (first, _), last = self._arrivals[0], self._arrivals[-1][0]
            return (last - first) / (len(self._arrivals) - 1)

    def _arrival_rate(self, now: float) -> float:
        rate = 0.0
        if len(self._arrivals) >= 2:
            (first_time, first_n), last_time = self._arrivals[0], self._arrivals[-1][0]
            span = last_time - first_time
            # Between chunks the rate is that of the chunks so far; a source silent for
            # longer than its usual gap, by RATE_WINDOW_S, reads 0.
            interval = span / (len(self._arrivals) - 1)
            if span > 0 and now - last_time <= interval + RATE_WINDOW_S:
                rate = (self._arrived - first_n) / span
        return rate

    def snapshot(self, now: float | None = None) -> StreamHealthSnapshot:
        """The counters now (``now``: ``time.monotonic()`` by default)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._forget_before(now - RATE_WINDOW_S)
            rate = self._arrival_rate(now)
            age = None if self._last_arrival is None else max(0.0, now - self._last_arrival)
            connected = self._connected
        record = self.tracker.snapshot()
        return StreamHealthSnapshot(
            connected=connected,
            n_samples=record.n_samples,
            nominal_rate=record.nominal_fs,
            effective_rate=rate,
            n_gaps=record.n_gaps,
            dropped_samples=record.dropped_samples,
            n_backwards=record.n_backward_steps,
            n_disconnects=record.n_disconnects,
            n_source_errors=record.n_source_errors,
            last_error=record.last_error,
            last_sample_age=age,
            gap_seconds=record.gap_seconds,
            last_gap=record.last_gap,
            max_backward_s=record.max_backward_s,
            integrity=record,
        )
