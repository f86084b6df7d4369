"""Count what goes wrong in a stream as its samples arrive, and keep its stored stamps in order.

:class:`IntegrityTracker` is fed each chunk of timestamps once, as it arrives (a few numpy passes
over the chunk), and the source's disconnects and errors; :meth:`IntegrityTracker.snapshot` gives
the :class:`StreamIntegrity` record at any time, from any thread. The live stream health (the GUI
panel) and the session's ``meta.json`` both come from this one class.

Rules (module constants, each a parameter of the tracker):

- Gap: a step between consecutive stamps longer than ``GAP_PERIODS`` (3) sample periods and
  longer than ``GAP_MIN_S`` (20 ms). The floor keeps the jitter of chunked LSL streams from being
  counted: liblsl stamps a chunk pushed without timestamps back from its push time, so the step
  between two chunks varies by the push jitter (measured: up to 3.6 ms at 2,048 Hz in 8-sample
  chunks on a loaded machine, 7 sample periods). Irregular streams (rate 0) have no gaps.
- Backward step: a stamp earlier than the one before it, as the source gave it (across chunk
  boundaries too); each one is counted, and the largest kept.
- Repair (regular-rate streams, ``repair=True``): the stamps returned by
  :meth:`IntegrityTracker.on_chunk` (the ones to store) are strictly increasing: each is
  ``max(source stamp, previous stored stamp + step)``, ``step`` being ``REPAIR_STEP_PERIODS``
  (a thousandth) of a sample period, at least ``REPAIR_STEP_MIN_S`` (0.1 µs). Stamps are only
  moved forward and only when they need it (every step of at least ``step`` is stored exactly
  as the source gave it), so each stored stamp lies between the source's stamp and the latest
  source stamp so far plus ``step`` per sample since that one. Why this rule: liblsl stamps a
  chunk pushed without timestamps back from its push time, so every stamp is late by the push
  delay and a backward step means the chunk before was pushed late; the stored stamp is then
  never later than a stamp the source itself gave (but for the tiny steps), i.e. the repair
  adds no error beyond the source's own. A minimum step of half a period instead let stored
  stamps run 54 ms ahead after a sender stall whose back-dated chunks overlapped by 15 ms.
  A backward step deeper than ``REPAIR_LIMIT_S`` (0.25 s: a clock reset, not push jitter) is
  stored as given and counted in ``n_unrepaired``, so no stored stamp is ever more than 0.25 s
  from the source's.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Generic, TypeVar

import numpy as np

from labsession.recording._integrity_record import KEEP_EACH_END, MESSAGE_CHARS, StreamIntegrity

__all__ = [
    "GAP_MIN_S",
    "GAP_PERIODS",
    "REPAIR_LIMIT_S",
    "REPAIR_STEP_MIN_S",
    "REPAIR_STEP_PERIODS",
    "IntegrityTracker",
    "StreamIntegrity",
    "integrity_from_timestamps",
]

#: A step longer than this many sample periods (and than ``GAP_MIN_S``) is a gap.
GAP_PERIODS = 3.0
#: Steps up to this many seconds are never gaps (chunk jitter of LSL streams).
GAP_MIN_S = 0.02
#: Smallest step, in sample periods, between stored stamps of a regular-rate stream ...
REPAIR_STEP_PERIODS = 0.001
#: ... and in seconds (well above float64's resolution at any LSL clock reading below 1e8 s).
REPAIR_STEP_MIN_S = 1e-7
#: Largest move of a stored stamp away from the source's (s); deeper backward steps stay as given.
REPAIR_LIMIT_S = 0.25

T = TypeVar("T")


class _Kept(Generic[T]):
    """The first and the last ``keep`` items of a sequence, and how many there were."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.count = 0
        self.first: list[T] = []
        self.last: deque[T] = deque(maxlen=keep)

    def add(self, item: T) -> None:
        self.count += 1
        if len(self.first) < self.keep:
            self.first.append(item)
        else:
            self.last.append(item)

    def add_many(self, items: list[T], total: int) -> None:
        """Add ``total`` items of which ``items`` holds the first and last ``keep``."""
        head = max(0, min(self.keep - len(self.first), total))
        self.first.extend(items[:head])
        rest = total - head
        if rest:
            self.last.extend(items[-min(rest, self.keep) :])
        self.count += total

    def replace_latest(self, item: T) -> None:
        if self.last:
            self.last[-1] = item
        elif self.first:
            self.first[-1] = item

    def items(self) -> tuple[T, ...]:
        return (*self.first, *self.last)


class IntegrityTracker:
    """Live integrity counters of one stream, updated as chunks arrive; thread-safe.

    One thread (the acquisition thread or :meth:`Session.append`) calls :meth:`on_chunk` for each
    chunk in order, and :meth:`on_disconnect`, :meth:`on_reconnect`, :meth:`on_source_error` as
    they happen; any thread calls :meth:`snapshot`. The rules are in the module docstring.

    Parameters
    ----------
    nominal_fs
        Declared rate in Hz (0 for irregular streams, or until known: :meth:`set_nominal_fs`).
    repair
        Whether :meth:`on_chunk` returns strictly increasing stamps (regular-rate streams only;
        irregular streams always get their stamps back as given).
    gap_periods, gap_min_s
        A step longer than both ``gap_periods`` sample periods and ``gap_min_s`` s is a gap.
    repair_limit_s
        The furthest a stored stamp may be moved from the source's (s).
    keep
        Gaps, disconnects and errors kept at each end of their list (all are counted).

    Examples
    --------
    >>> import numpy as np
    >>> tracker = IntegrityTracker(1000.0)
    >>> stored = tracker.on_chunk(np.array([0.000, 0.001, 0.002]))
    >>> stored = tracker.on_chunk(np.array([0.0015, 0.0025, 0.100]))  # 0.5 ms back, then a gap
    >>> record = tracker.snapshot()
    >>> record.n_backward_steps, record.n_gaps, record.gaps
    (1, 1, ((0.0025, 0.1),))
    >>> bool(np.all(np.diff(stored) > 0)), round(record.max_shift_s * 1e3, 3)  # ms
    (True, 0.501)
    """

    def __init__(
        self,
        nominal_fs: float = 0.0,
        *,
        repair: bool = True,
        gap_periods: float = GAP_PERIODS,
        gap_min_s: float = GAP_MIN_S,
        repair_limit_s: float = REPAIR_LIMIT_S,
        keep: int = KEEP_EACH_END,
    ) -> None:
        for label, value in (
            ("gap_periods", gap_periods),
            ("gap_min_s", gap_min_s),
            ("repair_limit_s", repair_limit_s),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        if int(keep) != keep or keep < 1:
            raise ValueError(f"keep must be a positive integer, got {keep!r}")
        self._lock = threading.Lock()
        self.repair = bool(repair)
        self.gap_periods = float(gap_periods)
        self.gap_min_s = float(gap_min_s)
        self.repair_limit_s = float(repair_limit_s)
        self._n_samples = 0
        self._first: float | None = None
        self._last_raw: float | None = None
        self._last_stored = -math.inf
        self._stored_is_raw = True
        self._n_backward = 0
        self._max_backward = 0.0
        self._gap_seconds = 0.0
        self._dropped = 0
        self._n_repaired = 0
        self._max_shift = 0.0
        self._n_unrepaired = 0
        self._gaps: _Kept[tuple[float, float]] = _Kept(int(keep))
        self._disconnects: _Kept[tuple[float, float | None]] = _Kept(int(keep))
        self._errors: _Kept[tuple[float, str]] = _Kept(int(keep))
        self._lost_at: float | None = None
        self.set_nominal_fs(nominal_fs)

    def resume(
        self,
        record: StreamIntegrity,
        *,
        n_samples: int | None = None,
        last_stored: float | None = None,
    ) -> None:
        """Continue counting from ``record`` (an earlier run's, e.g. after ``Session.attach``).

        Counts, kept lists and the last stamps are taken over, so the next chunk's first stamp
        is compared with the record's last one. ``n_samples`` replaces the record's sample count
        when fewer samples survived (a crashed run trimmed to what is on disk); ``last_stored``
        is the last stamp on disk (default: the record's last stamp plus its largest repair, an
        upper bound), after which stored stamps go on increasing. Call before the first
        :meth:`on_chunk`.
        """
        with self._lock:
            if self._n_samples:
                raise RuntimeError("resume() must come before the first chunk")
            self._n_samples = record.n_samples if n_samples is None else int(n_samples)
            self._first, self._last_raw = record.first_timestamp, record.last_timestamp
            if last_stored is not None:
                self._last_stored = float(last_stored)
                self._stored_is_raw = last_stored == record.last_timestamp
            elif record.last_timestamp is not None:
                self._last_stored = record.last_timestamp + record.max_shift_s
                self._stored_is_raw = record.max_shift_s == 0
            self._n_backward, self._max_backward = record.n_backward_steps, record.max_backward_s
            self._gap_seconds, self._dropped = record.gap_seconds, record.dropped_samples
            self._n_repaired, self._max_shift = record.n_repaired, record.max_shift_s
            self._n_unrepaired = record.n_unrepaired
            self._gaps.add_many(list(record.gaps), record.n_gaps)
            self._disconnects.add_many(list(record.disconnects), record.n_disconnects)
            if record.disconnects and record.disconnects[-1][1] is None:
                self._lost_at = record.disconnects[-1][0]  # still lost: a reconnect closes it
            self._errors.add_many(list(record.source_errors), record.n_source_errors)

    # -- configuration -------------------------------------------------------------------------
    def set_nominal_fs(self, nominal_fs: float) -> None:
        """Set the declared rate (Hz; 0 = irregular), e.g. once the source has connected."""
        fs = float(nominal_fs)
        if not (math.isfinite(fs) and fs >= 0):
            raise ValueError(f"nominal_fs must be a finite rate >= 0 Hz, got {nominal_fs!r}")
        with self._lock:
            self._fs = fs
            self._gap_threshold = max(self.gap_periods / fs, self.gap_min_s) if fs > 0 else 0.0
            self._min_step = max(REPAIR_STEP_PERIODS / fs, REPAIR_STEP_MIN_S) if fs > 0 else 0.0

    @property
    def nominal_fs(self) -> float:
        """The declared rate (Hz; 0 = irregular or not known yet)."""
        return self._fs

    @property
    def n_samples(self) -> int:
        """Samples counted so far (a plain read, no lock)."""
        return self._n_samples

    # -- updates -------------------------------------------------------------------------------
    def on_chunk(self, ts: np.ndarray) -> np.ndarray:
        """Count a chunk of timestamps ``ts (n,)`` (s) and return the stamps to store, ``(n,)``.

        The returned array is ``ts`` itself (as float64) unless a stamp had to be moved (see
        the module docstring); then it is a new array. Non-finite stamps are counted as samples
        but otherwise skipped (the session refuses them before they get here).
        """
        ts = np.asarray(ts, dtype=np.float64)
        if ts.ndim != 1:
            raise ValueError(f"timestamps must have shape (n,), got {ts.shape}")
        if ts.size == 0:
            return ts
        with self._lock:
            self._n_samples += ts.size
            inner = np.subtract(ts[1:], ts[:-1])
            low, high = (float(inner.min()), float(inner.max())) if inner.size else (0.0, 0.0)
            # A NaN or infinite stamp makes some step NaN or infinite, or is the first stamp.
            if not (math.isfinite(ts[0]) and math.isfinite(low) and math.isfinite(high)):
                self._count_valid(ts)
                return ts
            if not inner.size:
                low, high = math.inf, -math.inf
            edge = None if self._last_raw is None else float(ts[0]) - self._last_raw
            if edge is not None:
                low, high = min(low, edge), max(high, edge)
            self._count(ts, inner, edge, low, high)
            if not (self.repair and self._fs > 0):
                return ts
            return self._repaired(ts, low)

    def _count_valid(self, ts: np.ndarray) -> None:
        """Count the finite stamps of a chunk that holds non-finite ones."""
        valid = ts[np.isfinite(ts)]
        if valid.size:
            inner = np.subtract(valid[1:], valid[:-1])
            edge = None if self._last_raw is None else float(valid[0]) - self._last_raw
            steps = inner if edge is None else np.r_[edge, inner]
            low = float(steps.min()) if steps.size else math.inf
            high = float(steps.max()) if steps.size else -math.inf
            self._count(valid, inner, edge, low, high)

    def _count(
        self, ts: np.ndarray, inner: np.ndarray, edge: float | None, low: float, high: float
    ) -> None:
        """Update the counters from finite stamps ``ts``, their ``inner`` steps, and the step
        from the previous chunk's last stamp (``edge``); ``low``/``high``: the extreme steps."""
        prev = self._last_raw
        if self._first is None:
            self._first = float(ts[0])
        self._last_raw = float(ts[-1])
        if low < 0:
            self._n_backward += int(np.count_nonzero(inner < 0)) + (edge is not None and edge < 0)
            self._max_backward = max(self._max_backward, -low)
        threshold = self._gap_threshold
        if threshold > 0 and high > threshold:
            pairs: list[tuple[float, float]] = []
            jumps = []
            if edge is not None and prev is not None and edge > threshold:
                pairs.append((prev, float(ts[0])))
                jumps.append(edge)
            where = np.flatnonzero(inner > threshold)
            keep = self._gaps.keep
            picked = where if where.size <= 2 * keep else np.r_[where[:keep], where[-keep:]]
            pairs.extend((float(ts[i]), float(ts[i + 1])) for i in picked)
            jumps_all = np.r_[jumps, inner[where]]
            self._gap_seconds += float(jumps_all.sum())
            self._dropped += int(np.maximum(np.rint(jumps_all * self._fs) - 1, 0).sum())
            self._gaps.add_many(pairs, len(jumps) + int(where.size))

    def _repaired(self, ts: np.ndarray, low: float) -> np.ndarray:
        step = self._min_step
        # ``low`` is the smallest step from the previous source stamp on: a stored step too,
        # as long as that stamp was stored as given.
        if self._stored_is_raw and low >= step:
            self._last_stored = float(ts[-1])
            return ts  # the common case: nothing to move
        out = np.empty_like(ts)
        prev, start = self._last_stored, 0
        while start < ts.size:
            seg = ts[start:]
            ramp = np.arange(seg.size) * step
            lifted = seg - ramp
            lifted[0] = max(lifted[0], prev + step)
            floor = np.maximum.accumulate(lifted)
            moved = floor > seg - ramp
            stored = np.where(moved, floor + ramp, seg)
            over = np.flatnonzero(stored - seg > self.repair_limit_s)
            if over.size == 0:
                out[start:] = stored
                break
            k = int(over[0])  # too deep to repair: store as given, go on from there
            out[start : start + k] = stored[:k]
            out[start + k] = seg[k]
            self._n_unrepaired += 1
            prev, start = float(seg[k]), start + k + 1
        shift = out - ts
        n_moved = int(np.count_nonzero(shift))
        if n_moved:
            self._n_repaired += n_moved
            self._max_shift = max(self._max_shift, float(shift.max()))
        self._last_stored = float(out[-1])
        self._stored_is_raw = shift[-1] == 0
        return out

    def on_disconnect(self, t: float) -> None:
        """The source stopped delivering at LSL time ``t`` (repeats while lost are ignored)."""
        with self._lock:
            if self._lost_at is None:
                self._lost_at = float(t)
                self._disconnects.add((float(t), None))

    def on_reconnect(self, t: float) -> None:
        """The source delivers again at LSL time ``t`` (ends the open disconnect, if any)."""
        with self._lock:
            if self._lost_at is not None:  # never back before lost (a clock reset between)
                self._disconnects.replace_latest((self._lost_at, max(float(t), self._lost_at)))
                self._lost_at = None

    def on_source_error(self, t: float, message: str) -> None:
        """The source raised at LSL time ``t``; ``message`` is kept (cut to 300 characters)."""
        text = str(message)
        if len(text) > MESSAGE_CHARS:
            text = text[: MESSAGE_CHARS - 1] + "…"
        with self._lock:
            self._errors.add((float(t), text))

    def on_fault(self, kind: str, t: float, message: str) -> None:
        """Dispatch a fault as ``Session.record_fault`` receives it from a ``Stream``.

        ``kind`` ``"disconnected"`` / ``"reconnected"`` open and close a disconnect;
        ``"source_error"``, ``"acquisition_stopped"`` and ``"append_error"`` (a chunk the
        session refused, e.g. for non-finite stamps) are source errors (the latter two with
        their message prefixed); other kinds are ignored.
        """
        if kind == "disconnected":
            self.on_disconnect(t)
        elif kind == "reconnected":
            self.on_reconnect(t)
        elif kind == "source_error":
            self.on_source_error(t, message)
        elif kind == "acquisition_stopped":
            self.on_source_error(t, f"acquisition stopped: {message}")
        elif kind == "append_error":
            self.on_source_error(t, f"samples refused by the session: {message}")

    # -- reading -------------------------------------------------------------------------------
    @property
    def disconnected(self) -> bool:
        """True between :meth:`on_disconnect` and :meth:`on_reconnect`."""
        return self._lost_at is not None

    def snapshot(self) -> StreamIntegrity:
        """The record now (a consistent copy)."""
        with self._lock:
            n, first, last = self._n_samples, self._first, self._last_raw
            effective = 0.0
            if n >= 2 and first is not None and last is not None and last > first:
                effective = (n - 1) / (last - first)
                if not math.isfinite(effective):  # stamps a few ulp apart
                    effective = 0.0
            return StreamIntegrity(
                nominal_fs=self._fs,
                n_samples=n,
                first_timestamp=first,
                last_timestamp=last,
                effective_fs=effective,
                gap_threshold_s=self._gap_threshold,
                n_gaps=self._gaps.count,
                gap_seconds=self._gap_seconds,
                dropped_samples=self._dropped,
                gaps=self._gaps.items(),
                n_backward_steps=self._n_backward,
                max_backward_s=self._max_backward,
                n_repaired=self._n_repaired,
                max_shift_s=self._max_shift,
                n_unrepaired=self._n_unrepaired,
                n_disconnects=self._disconnects.count,
                disconnects=self._disconnects.items(),
                n_source_errors=self._errors.count,
                source_errors=self._errors.items(),
            )


def integrity_from_timestamps(
    ts: np.ndarray,
    nominal_fs: float,
    *,
    gap_periods: float = GAP_PERIODS,
    gap_min_s: float = GAP_MIN_S,
) -> StreamIntegrity:
    """The integrity record of stored timestamps ``ts (n,)`` (s), for sessions without one.

    Samples, effective rate, gaps and backward steps are computed as the live tracker does;
    disconnects and source errors are not in the stamps, so they read 0, and nothing is repaired
    (``n_repaired`` 0). For a session too large for memory, feed an ``IntegrityTracker(fs,
    repair=False)`` block by block instead: the result is the same.
    """
    tracker = IntegrityTracker(
        nominal_fs, repair=False, gap_periods=gap_periods, gap_min_s=gap_min_s
    )
    tracker.on_chunk(ts)
    return tracker.snapshot()
