"""What :func:`~labsession.recording.plot_session` draws, read in bounded memory.

The rows of a time window are found by bisection on the stored timestamps (a few chunk reads),
then read block by block with the verified reader (:meth:`SessionReader.read_rows`); for more
samples than pixel columns each block is folded into a per-column minimum and maximum, so the
memory used is one block plus ``2 x channels x columns`` numbers, whatever the session's length.

Timestamps that go back (a device whose clock started over, stored as given) make bisection
meaningless: then every sample is drawn at its own stamp, on the time range the stamps span
(earliest to latest), and the rows of a window are those whose stamps fall in it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labsession.errors import SessionError
from labsession.recording._integrity import IntegrityTracker
from labsession.recording._integrity_record import StreamIntegrity
from labsession.recording._reader import SessionReader

__all__ = [
    "BLOCK_BYTES",
    "DEFAULT_CHANNELS",
    "Traces",
    "parse_channels",
    "read_traces",
    "select_channels",
]

#: Bytes of samples read at a time (all channels of the stream, as stored).
BLOCK_BYTES = 4 << 20
#: Channels plotted when none are asked for: the first ones, up to this many.
DEFAULT_CHANNELS = 8

_ITEM = re.compile(r"^\s*(\d*)\s*(:)?\s*(\d*)\s*$")


def parse_channels(text: str) -> slice | list[int]:
    """Parse a channel selection as written on the command line.

    Comma-separated items, each a channel ``N`` or a range ``A:B`` (end exclusive, either end
    may be left out): ``"0:8"``, ``"3"``, ``"0,2,5"``, ``"4:"``, ``"0:2,6:8"``.

    Returns
    -------
    slice or list of int
        A slice for a single range, else the channel indices in the order written.

    Raises
    ------
    ValueError
        For anything else, naming the text and the accepted forms.
    """
    items = str(text).split(",")
    out: list[int] = []
    for item in items:
        match = _ITEM.match(item)
        if match is None or not (match[1] or match[2] or match[3]):
            raise ValueError(
                f"channels {text!r}: expected N, A:B or a comma-separated list of them "
                f"(channels from 0, B exclusive), e.g. 0:8 or 0,2,5"
            )
        first, is_range, last = match[1], match[2], match[3]
        if not is_range:
            out.append(int(first))
            continue
        lo = int(first) if first else 0
        hi = int(last) if last else None
        if hi is not None and hi <= lo:
            raise ValueError(f"channels {text!r}: range {item.strip()!r} is empty (need A < B)")
        if len(items) == 1:
            return slice(lo, hi)
        if hi is None:
            raise ValueError(f"channels {text!r}: an open range ({item.strip()!r}) must be alone")
        out.extend(range(lo, hi))
    return out


def select_channels(
    channels: slice | Sequence[int] | str | None, n_channels: int, *, where: str = "the stream"
) -> list[int]:
    """The channel indices of ``channels`` in a stream of ``n_channels``.

    Parameters
    ----------
    channels
        A slice, a sequence of indices, a :func:`parse_channels` string, or None for the first
        ``DEFAULT_CHANNELS``.
    n_channels
        Channels of the stream.
    where
        Named in messages (e.g. ``"stream 'emg' of session.zip"``).

    Raises
    ------
    ValueError
        An index outside ``[0, n_channels)``, a repeated one, or an empty selection.
    """
    if channels is None:
        return list(range(min(n_channels, DEFAULT_CHANNELS)))
    spec = parse_channels(channels) if isinstance(channels, str) else channels
    if isinstance(spec, slice):
        chosen = list(range(n_channels)[spec])
    else:
        chosen = [int(c) for c in spec]
        bad = [c for c in chosen if not 0 <= c < n_channels]
        if bad:
            raise ValueError(
                f"channels {channels!r}: {bad[0]} is not a channel of {where}, which has "
                f"channels 0 to {n_channels - 1}"
            )
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"channels {channels!r}: a channel is listed twice")
    if not chosen:
        raise ValueError(
            f"channels {channels!r} selects no channel of {where} (channels 0 to {n_channels - 1})"
        )
    return chosen


@dataclass(frozen=True)
class Traces:
    """The plotted samples of one stream's time window.

    Attributes
    ----------
    t
        ``(n,)`` seconds from the stream's first sample: the samples' times (``envelope``
        False) or the centres of the pixel columns (``envelope`` True).
    low, high
        ``(n_channels, n)`` float64: the samples themselves (then ``low is high``), or each
        column's minimum and maximum (NaN where a column holds no sample: a gap).
    envelope
        Whether ``low``/``high`` are a per-column envelope.
    t0
        The stream's earliest timestamp (stream clock, s): time 0 of the plot (its first
        sample's, unless the stamps go back).
    start, end
        The window, in seconds from ``t0``.
    duration
        Time of the stream's latest timestamp, in seconds from ``t0``.
    n_back
        How many times the stored timestamps go back (a clock reset), ``0`` when they are in
        order; then samples are drawn at their own stamps.
    integrity
        The stream's integrity record: the one saved in ``meta.json``, or one computed from the
        window's stored timestamps for sessions without one (``computed`` True).
    computed
        Whether ``integrity`` was computed here.
    rows
        Samples in the window.
    """

    t: np.ndarray
    low: np.ndarray
    high: np.ndarray
    envelope: bool
    t0: float
    start: float
    end: float
    duration: float
    integrity: StreamIntegrity
    computed: bool
    rows: int
    n_back: int = 0


def _stamp(store: SessionReader, name: str, row: int) -> float:
    return float(store.read_rows(name, row, row + 1, timestamps=True, dtype=np.float64)[0])


def _first_row_after(store: SessionReader, name: str, n: int, t: float, *, inclusive: bool) -> int:
    """First row whose stamp is ``>= t`` (``inclusive``) or ``> t``: bisection, ~log2(n) reads."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        stamp = _stamp(store, name, mid)
        if stamp < t or (not inclusive and stamp == t):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _time_range(store: SessionReader, name: str, n: int, block: int) -> tuple[float, float, int]:
    """``(earliest, latest, n_back)`` of stream ``name``'s ``n`` stored stamps: one pass,
    block by block; ``n_back`` counts the steps back (0: in order)."""
    lo, hi, n_back, previous = np.inf, -np.inf, 0, -np.inf
    for first in range(0, n, block):
        ts = store.read_rows(name, first, min(n, first + block), timestamps=True, dtype=np.float64)
        lo, hi = min(lo, float(ts.min())), max(hi, float(ts.max()))
        n_back += int(np.count_nonzero(np.diff(ts) < 0)) + int(ts[0] < previous)
        previous = float(ts[-1])
    return lo, hi, n_back


def _fold(low: np.ndarray, high: np.ndarray, col: np.ndarray, values: np.ndarray) -> None:
    """Fold ``values (rows, ch)`` into ``low``/``high (ch, columns)`` by column ``col (rows,)``."""
    if col.size > 1 and np.any(col[1:] < col[:-1]):  # stamps not increasing: group by sorting
        order = np.argsort(col, kind="stable")
        col, values = col[order], values[order]
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    cols = col[starts]
    low[:, cols] = np.fmin(low[:, cols], np.fmin.reduceat(values, starts, axis=0).T)
    high[:, cols] = np.fmax(high[:, cols], np.fmax.reduceat(values, starts, axis=0).T)


def read_traces(
    store: SessionReader,
    name: str,
    channels: list[int],
    *,
    start: float | None,
    end: float | None,
    columns: int,
) -> Traces:
    """Read stream ``name``'s window ``[start, end]`` (s from its first sample) for plotting.

    At most ``columns`` samples are returned as they are; more are reduced to a ``columns``-wide
    min/max envelope, read in blocks of about :data:`BLOCK_BYTES`.

    Raises
    ------
    SessionError
        The stream has no samples, or a chunk is corrupt.
    ValueError
        ``start`` is at or past the last sample, or ``start >= end``.
    """
    n = store.n_samples(name)
    where = f"{store.path}: stream {name!r}"
    if n == 0:
        raise SessionError(f"{where} has no samples to plot")
    info = store.stream_info(name)
    block = max(1024, BLOCK_BYTES // (info.n_channels * info.dtype.itemsize))
    saved = store.integrity(name)
    t0, latest, n_back = _stamp(store, name, 0), _stamp(store, name, n - 1), 0
    if saved is None or saved.n_unrepaired or latest < t0:
        # Stamps stored as given may go back: find their real range (one pass over them).
        t0, latest, n_back = _time_range(store, name, n, block)
    duration = latest - t0
    lo_s = 0.0 if start is None else float(start)
    hi_s = duration if end is None else min(float(end), duration)
    if start is not None and lo_s > 0 and lo_s >= duration:
        raise ValueError(f"start {lo_s:g} s is at or past the end of {where} ({duration:.3f} s)")
    if hi_s < lo_s or (end is not None and hi_s <= lo_s):
        shown_end = hi_s if end is None else float(end)
        raise ValueError(
            f"the window [{lo_s:g}, {shown_end:g}] s of {where} is empty (need start < end)"
        )
    if n_back:  # rows in time order cannot be bisected: read all, keep those in the window
        row_lo, row_hi = 0, n
    else:
        row_lo = _first_row_after(store, name, n, t0 + lo_s, inclusive=True) if lo_s > 0 else 0
        row_hi = (
            _first_row_after(store, name, n, t0 + hi_s, inclusive=False) if hi_s < duration else n
        )
    tracker = IntegrityTracker(info.fs, repair=False) if saved is None else None
    rows = row_hi - row_lo
    span = max(hi_s - lo_s, 1e-12)
    n_ch = len(channels)
    envelope = rows > columns
    if envelope:
        low = np.full((n_ch, columns), np.inf)
        high = np.full((n_ch, columns), -np.inf)
        scale = columns / span
    else:
        parts: list[np.ndarray] = []
        stamps: list[np.ndarray] = []
    kept = 0  # samples in the window
    for first in range(row_lo, row_hi, block):
        last = min(row_hi, first + block)
        ts = store.read_rows(name, first, last, timestamps=True, dtype=np.float64)
        if tracker is not None:
            tracker.on_chunk(ts)
        values = store.read_rows(name, first, last)[:, channels]  # stored dtype
        if n_back:
            inside = (ts >= t0 + lo_s) & (ts <= t0 + hi_s)
            ts, values = ts[inside], values[inside]
            if not ts.size:
                continue
        kept += ts.size
        if envelope:
            col = np.clip(((ts - t0 - lo_s) * scale).astype(np.int64), 0, columns - 1)
            _fold(low, high, col, values)
        else:
            parts.append(values.T.astype(np.float64))
            stamps.append(ts - t0)
    if envelope:
        empty = ~np.isfinite(low)
        low[empty] = np.nan
        high[empty] = np.nan
        t = lo_s + (np.arange(columns) + 0.5) * span / columns
    else:
        t = np.concatenate(stamps) if stamps else np.empty(0)
        low = high = np.concatenate(parts, axis=1) if parts else np.empty((n_ch, 0))
        if n_back:  # a line through time, not back and forth, broken where samples are apart
            order = np.argsort(t, kind="stable")
            t, low = t[order], low[:, order]
            apart = np.flatnonzero(np.diff(t) > max(3.0 / info.fs, 0.02)) + 1
            t = np.insert(t, apart, np.nan)
            low = high = np.insert(low, apart, np.nan, axis=1)
    record = saved if tracker is None else tracker.snapshot()
    return Traces(
        t=t,
        low=low,
        high=high,
        envelope=envelope,
        t0=t0,
        start=lo_s,
        end=hi_s,
        duration=duration,
        integrity=record,
        computed=saved is None,
        rows=kept,
        n_back=n_back,
    )
