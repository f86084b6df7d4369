"""A target stream read by time: the layout of dense regression targets, and their lookup.

Layout
------
A *target stream* records a continuous target that the subject follows (a force ramp, a cursor
path) as a stream of its own, one sample per target sample at its rate ``fs``. Its channels are
the target value(s) (one for a force, two for a cursor's x and y, ...) followed by the **phase
index** in the last channel: an integer stored in the stream's dtype (float32 holds it exactly),
telling which part of the protocol (which ramp, which hold) the sample belongs to; a negative
phase (:data:`IDLE_PHASE`, -1, as :class:`~labsession.sources.TargetSource` writes it) means
no target was shown. Phases are whole numbers within an int32 (:data:`MIN_PHASE` to
:data:`MAX_PHASE`). If the stream names its channels,
the last is named :data:`PHASE_CHANNEL` (``"phase"``). :class:`~labsession.sources.TargetSource`
writes such streams, and so does MyoGestic's ``TargetSource`` (``["target_pct", "phase"]``).

Value at a time ``t``
---------------------
- ``t`` before the first sample or after the last: none (outside the span).
- ``t`` on a sample: that sample's values and phase (of repeated timestamps, the last sample).
- ``t`` between samples ``i`` and ``i + 1``:

  - more than ``max_gap_periods`` sample periods apart (``ts[i+1] - ts[i] > max_gap_periods /
    fs``, :data:`GAP_PERIODS` = 3 by default, as MyoGestic: timestamp jitter and one lost
    sample are no gap, a lost chunk is): none, ``t`` is in a gap;
  - of the same phase: linear interpolation between them, and their phase;
  - of different phases: sample ``i``'s values and phase, held (the phase changed at sample
    ``i + 1``): values of two phases are never blended.

The stream is read one block of rows at a time (:class:`TargetTrack`): memory does not grow
with its length.
"""

from __future__ import annotations

import numpy as np

from labsession.errors import SessionError
from labsession.recording import _blocks
from labsession.recording._reader import SessionReader
from labsession.recording._schema import MAX_CLASS_INDEX

__all__ = [
    "GAP",
    "GAP_PERIODS",
    "IDLE_PHASE",
    "OUTSIDE",
    "PHASE_CHANNEL",
    "TargetTrack",
    "UnusableTarget",
]

#: Name of the last channel of a target stream: the phase index.
PHASE_CHANNEL = "phase"
#: Phase index of samples during which no target is shown (before a protocol starts, after
#: it ends); any negative phase means the same.
IDLE_PHASE = -1
#: Lowest and highest phase index (an int32, as class indices are). A phase outside
#: ``[MIN_PHASE, MAX_PHASE]``, not a whole number, NaN or infinite makes the stream unusable.
MIN_PHASE, MAX_PHASE = -MAX_CLASS_INDEX - 1, MAX_CLASS_INDEX
#: Default: samples further apart than this many sample periods leave a gap between them.
GAP_PERIODS = 3.0
#: :meth:`TargetTrack.lookup` results when no value is defined at the time asked for.
OUTSIDE = "outside"
GAP = "gap"

_FLOAT64 = np.dtype(np.float64)


class UnusableTarget(SessionError):
    """A stream that cannot serve as a target stream (layout, order): the message says why."""


class TargetTrack:
    """The values of a target stream at any time, read one block of rows at a time.

    Opening checks the whole stream once, block by block: at least two channels, timestamps
    in time order (never going back) and whole-number phase indices; it keeps the first
    timestamp of each block, so :meth:`lookup` finds the block of any time without reading.
    :meth:`lookup` then holds one block of ``(block_rows + 1)`` rows (the first row of the
    next block is read with it, to interpolate across the boundary). Times asked in order
    read each block once.

    Parameters
    ----------
    store
        The open session.
    name
        The target stream.
    max_gap_periods
        Samples further apart than this many periods of the stream leave a gap.

    Raises
    ------
    UnusableTarget
        The stream has no samples, fewer than two channels, a last channel named other than
        ``"phase"``, timestamps that go back, or a phase that is not a whole number.
    SessionError
        A chunk of the stream is corrupt.
    """

    def __init__(self, store: SessionReader, name: str, *, max_gap_periods: float = GAP_PERIODS):
        info = store.stream_info(name)
        where = f"target stream {name!r}"
        if info.n_channels < 2:
            raise UnusableTarget(
                f"{where} has {info.n_channels} channel; a target stream holds the value(s), "
                f"then the phase index (see TargetSource)"
            )
        if info.channel_names and info.channel_names[-1] != PHASE_CHANNEL:
            raise UnusableTarget(
                f"{where} has channels {list(info.channel_names)}; the last channel of a target "
                f"stream is the phase index, named {PHASE_CHANNEL!r} (is it a target stream?)"
            )
        self._store, self._name = store, name
        self.n = store.n_samples(name)
        if self.n == 0:
            raise UnusableTarget(f"{where} has no samples")
        self.n_values = info.n_channels - 1
        #: Longest time (s) between two samples that is not a gap.
        self.max_gap = max_gap_periods / info.fs
        chunk_rows = store._array_chunks(name, timestamps=False).chunk_rows
        row_bytes = 8 * (info.n_channels + 1)  # float64 values, phase and timestamp
        target = _blocks.BLOCK_BYTES // 8 // row_bytes
        self.block_rows = max(chunk_rows, target // chunk_rows * chunk_rows)
        self._row_bytes = row_bytes
        self._starts = self._scan(where)
        self.first = float(self._starts[0])
        self._k = -1
        self._ts = np.empty(0)
        self._rows = np.empty((0, info.n_channels))
        #: Most bytes of the stream held at once (the block being looked up in).
        self.peak_held_bytes = 0

    def _scan(self, where: str) -> np.ndarray:
        """First timestamp of each block; checks order and phases; sets :attr:`last`."""
        starts = []
        previous = -np.inf
        for lo in range(0, self.n, self.block_rows):
            hi = min(self.n, lo + self.block_rows)
            ts = self._store.read_rows(self._name, lo, hi, timestamps=True, dtype=_FLOAT64)
            phase = self._store.read_rows(self._name, lo, hi, dtype=_FLOAT64)[:, -1]
            steps = np.diff(ts, prepend=previous)
            if (back := np.flatnonzero(~(steps >= 0))).size:
                i = int(back[0])
                before, now = float(previous if i == 0 else ts[i - 1]), float(ts[i])
                raise UnusableTarget(
                    f"{where} goes back in time at sample {lo + i} ({before!r} -> {now!r} s); "
                    f"a target stream must be in time order"
                    if np.isfinite(now)
                    else f"{where} has timestamp {now!r} at sample {lo + i}"
                )
            whole = (phase == np.rint(phase)) & (phase >= MIN_PHASE) & (phase <= MAX_PHASE)
            if (odd := np.flatnonzero(~whole)).size:  # NaN and infinity too
                i = int(odd[0])
                raise UnusableTarget(
                    f"{where} has phase {float(phase[i])!r} at sample {lo + i}: the last "
                    f"channel must hold whole-number phase indices in [{MIN_PHASE}, {MAX_PHASE}]"
                )
            starts.append(ts[0])
            previous = ts[-1]
        #: Timestamp of the last sample (s): the span ends there.
        self.last = float(previous)
        return np.asarray(starts)

    def _load(self, k: int) -> None:
        lo = k * self.block_rows
        hi = min(self.n, lo + self.block_rows + 1)
        self._ts = self._rows = np.empty(0)  # let the old block go before reading the new one
        self._ts = self._store.read_rows(self._name, lo, hi, timestamps=True, dtype=_FLOAT64)
        self._rows = self._store.read_rows(self._name, lo, hi, dtype=_FLOAT64)
        self._k = k
        self.peak_held_bytes = max(self.peak_held_bytes, (hi - lo) * self._row_bytes)

    def lookup(self, t: float) -> tuple[np.ndarray, int] | str:
        """The target at time ``t`` (s): ``(values (n_values,) float64, phase)``, or why none.

        Returns
        -------
        tuple or str
            ``(values, phase)``; :data:`OUTSIDE` when ``t`` is not within the span of the
            stream (or is NaN); :data:`GAP` when it falls in a gap (see the module's text).
        """
        if not self.first <= t <= self.last:
            return OUTSIDE
        k = int(np.searchsorted(self._starts, t, side="right")) - 1
        if k != self._k:
            self._load(k)
        ts, rows = self._ts, self._rows
        i = int(np.searchsorted(ts, t, side="right")) - 1  # ts[i] <= t (ts[0] <= t by k)
        if ts[i] == t:
            return rows[i, :-1].copy(), int(rows[i, -1])
        # t < ts[i + 1], which is held: t <= last, and a block is read with the next row.
        t0, t1 = ts[i], ts[i + 1]
        if t1 - t0 > self.max_gap:
            return GAP
        phase = rows[i, -1]
        if rows[i + 1, -1] != phase:
            return rows[i, :-1].copy(), int(phase)
        w = (t - t0) / (t1 - t0)
        return rows[i, :-1] + w * (rows[i + 1, :-1] - rows[i, :-1]), int(phase)

    def close(self) -> None:
        """Drop the block held (idempotent)."""
        self._ts = self._rows = np.empty(0)
        self._k = -1
