"""Per-stream health counters: what a user needs to trust a live recording."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["StreamHealth", "StreamHealthSnapshot"]

#: A step between consecutive timestamps longer than this many sample periods is a gap.
GAP_PERIODS = 2.5
#: Seconds of arrivals over which the effective rate is measured (at least the last
#: ``MIN_ARRIVALS`` chunks are kept, for sources that deliver rarely).
RATE_WINDOW_S = 2.0
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
        Timestamp jumps longer than ``GAP_PERIODS`` sample periods.
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

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict of the counters."""
        return asdict(self)


class StreamHealth:
    """Counters of one stream, updated by its acquisition thread as samples arrive.

    The acquisition thread calls :meth:`on_chunk`, :meth:`on_connected`, :meth:`on_disconnected`
    and :meth:`on_source_error`; any thread reads :meth:`snapshot`. Each update costs a few numpy
    reductions over the chunk's timestamps, once, as it arrives.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connected = False
        self._nominal_rate = 0.0
        self._n_samples = 0
        self._n_gaps = 0
        self._dropped = 0
        self._n_backwards = 0
        self._n_disconnects = 0
        self._n_errors = 0
        self._last_error: str | None = None
        self._last_ts: float | None = None
        self._last_arrival: float | None = None
        self._arrivals: deque[tuple[float, int]] = deque()
        self._arrived = 0  # samples in self._arrivals

    # -- updates (acquisition thread) ---------------------------------------------------------
    def on_connected(self, nominal_rate: float) -> None:
        """The source connected (or reconnected) at ``nominal_rate`` Hz."""
        with self._lock:
            self._connected = True
            self._nominal_rate = float(nominal_rate)

    def on_disconnected(self) -> None:
        """The source stopped delivering (counted once per connected -> disconnected change)."""
        with self._lock:
            if self._connected:
                self._n_disconnects += 1
            self._connected = False

    def on_stopped(self, exc: BaseException) -> None:
        """Acquisition ended for good on ``exc``: disconnected, the error kept."""
        with self._lock:
            self._connected = False
            self._n_errors += 1
            self._last_error = f"acquisition stopped: {type(exc).__name__}: {exc}"

    def on_source_error(self, exc: BaseException) -> None:
        """The source's ``read`` raised ``exc``."""
        with self._lock:
            self._n_errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"

    def on_chunk(self, ts: np.ndarray, now: float | None = None) -> None:
        """Count a chunk of samples with timestamps ``ts (n,)`` (seconds) arriving at ``now``."""
        n = int(ts.shape[0])
        if n == 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            steps = np.diff(ts) if self._last_ts is None else np.diff(ts, prepend=self._last_ts)
            if steps.size:
                self._n_backwards += int(np.count_nonzero(steps < 0))
                if self._nominal_rate > 0:
                    period = 1.0 / self._nominal_rate
                    jumps = steps[steps > GAP_PERIODS * period]
                    if jumps.size:
                        self._n_gaps += int(jumps.size)
                        self._dropped += int(np.sum(np.rint(jumps / period) - 1))
            self._last_ts = float(ts[-1])
            self._n_samples += n
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
        return self._n_samples

    def last_sample_age(self, now: float | None = None) -> float | None:
        """Seconds since the latest chunk arrived (None before the first); cheap, no lock."""
        arrival = self._last_arrival
        if arrival is None:
            return None
        return max(0.0, (time.monotonic() if now is None else now) - arrival)

    def snapshot(self, now: float | None = None) -> StreamHealthSnapshot:
        """The counters now (``now``: ``time.monotonic()`` by default)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._forget_before(now - RATE_WINDOW_S)
            rate = 0.0
            if len(self._arrivals) >= 2:
                (first_time, first_n), last_time = self._arrivals[0], self._arrivals[-1][0]
                span = last_time - first_time
                # Between chunks the rate is that of the chunks so far; a source silent for
                # longer than its usual gap, by RATE_WINDOW_S, reads 0.
                interval = span / (len(self._arrivals) - 1)
                if span > 0 and now - last_time <= interval + RATE_WINDOW_S:
                    rate = (self._arrived - first_n) / span
            age = None if self._last_arrival is None else max(0.0, now - self._last_arrival)
            return StreamHealthSnapshot(
                connected=self._connected,
                n_samples=self._n_samples,
                nominal_rate=self._nominal_rate,
                effective_rate=rate,
                n_gaps=self._n_gaps,
                dropped_samples=self._dropped,
                n_backwards=self._n_backwards,
                n_disconnects=self._n_disconnects,
                n_source_errors=self._n_errors,
                last_error=self._last_error,
                last_sample_age=age,
            )
