"""The signal viewer's numerics: min/max per pixel column, a live notch, and painting spans.

Everything works on whole arrays, all channels and all columns at once (no Python loop over
either). Pixel columns are fixed on the stream's absolute sample index: column ``g`` holds the
samples ``ceil(g * n_view / n_columns)`` up to (not including) ``ceil((g + 1) * n_view /
n_columns)``, so a finished column never changes as the view scrolls. :class:`LiveColumns`
builds on that: after the first frame it decimates only the columns completed since the
previous frame, from the samples that arrived since then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

if TYPE_CHECKING:
    from labsession.acquisition import RingBuffer

__all__ = [
    "IncrementalNotch",
    "LiveColumns",
    "channel_extent",
    "column_edges",
    "minmax_columns",
    "paint_columns",
    "paint_spans",
    "span_rows",
]

#: Samples read beyond the count expected new (some may arrive between the count and the copy).
_OVERLAP = 256
_F32_MAX = float(np.finfo(np.float32).max)


def _as_float32(x: np.ndarray) -> np.ndarray:
    """``x`` as float32; values beyond float32's range are clipped to it (no overflow warning)."""
    if x.dtype.kind == "f" and x.dtype.itemsize > 4:
        x = np.clip(x, -_F32_MAX, _F32_MAX)
    return x.astype(np.float32, copy=False)


def column_edges(g_start: int, g_stop: int, n_columns: int, n_view: int) -> np.ndarray:
    """Sample-index edges of the global pixel columns ``g_start`` to ``g_stop - 1``.

    Parameters
    ----------
    g_start, g_stop
        Global column indices (column ``g`` of a stream holds ``n_view / n_columns`` samples).
    n_columns, n_view
        Pixel columns of the view and samples it spans (both >= 1).

    Returns
    -------
    edges : ndarray of int64, shape (g_stop - g_start + 1,)
        Column ``g_start + i`` holds samples ``edges[i]`` to ``edges[i + 1] - 1`` (absolute
        indices; 0 or 1 sample per column when ``n_view < n_columns``).
    """
    g = np.arange(g_start, g_stop + 1, dtype=np.int64)
    return -((-g * n_view) // n_columns)  # ceil(g * n_view / n_columns), exact in integers


def minmax_columns(
    data: np.ndarray, first: int, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum of each channel in each pixel column.

    Parameters
    ----------
    data : ndarray, shape (n_samples, n_channels)
        Consecutive samples (the ring buffer's layout), any numeric dtype; NaN marks a missing
        sample.
    first
        Absolute sample index of ``data[0]``.
    edges : ndarray of int, shape (n_columns + 1,)
        Column edges as absolute sample indices (:func:`column_edges`), with
        ``edges[-1] <= first + n_samples``.

    Returns
    -------
    lo, hi : ndarray of float32, shape (n_channels, n_columns)
        NaN-ignoring min and max (signal units). A column with no sample of its own (fewer
        samples than columns) shows the sample before it, so the trace holds its value; a
        column before ``data[0]``, or with NaN only, is NaN. Values beyond float32's range are
        clipped to it.

    Only the columns that reach into ``data`` are computed: the cost is bounded by
    ``n_samples`` and ``n_columns``, however far before ``data[0]`` the first edge lies.
    """
    n_samples, n_channels = data.shape
    n_columns = edges.shape[0] - 1
    lo = np.full((n_channels, n_columns), np.nan, dtype=np.float32)
    hi = lo.copy()
    ends = np.minimum(edges[1:] - first, n_samples)
    # Columns are in order: those before k0 have not even the sample before them in data.
    k0 = int(np.searchsorted(ends, 1))
    if n_samples == 0 or k0 == n_columns:
        return lo, hi
    ends = ends[k0:]
    starts = np.clip(edges[k0:-1] - first, 0, ends)
    width = max(1, int((ends - starts).max()))  # at most n_samples
    # idx[j, i]: j-th sample of column i, repeating its last one (the one before when empty).
    idx = np.minimum(starts + np.arange(width)[:, None], ends - 1)
    np.clip(idx, 0, n_samples - 1, out=idx)
    block = np.take(data, idx.ravel(), axis=0).reshape(width, n_columns - k0, n_channels)
    # Reducing over the leading axis combines whole (n_columns, n_channels) planes: SIMD-fast.
    lo[:, k0:] = _as_float32(np.fmin.reduce(block, axis=0)).T
    hi[:, k0:] = _as_float32(np.fmax.reduce(block, axis=0)).T
    return lo, hi


def channel_extent(
    lo: np.ndarray, hi: np.ndarray, *, quantile: float = 0.99
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and robust half-range of each channel, from its column min/max.

    Parameters
    ----------
    lo, hi : ndarray, shape (n_channels, n_columns)
        Column min and max (:func:`minmax_columns`), in any column order; NaN columns are
        left out.
    quantile
        Fraction of columns whose excursion from the centre the half-range covers (a lone
        spike does not squash the channel).

    Returns
    -------
    centre, half_range : ndarray of float64, shape (n_channels,)
        Mean of the column mid-points, and the ``quantile`` of ``max(hi - centre, centre - lo)``
        over the columns (signal units); 0 for a channel with no finite column.
    """
    finite = np.isfinite(lo) & np.isfinite(hi)
    count = finite.sum(axis=1)
    mid = np.where(finite, (lo.astype(np.float64) + hi) / 2, 0.0)
    centre = mid.sum(axis=1) / np.maximum(count, 1)
    if lo.shape[1] == 0:
        return centre, np.zeros_like(centre)
    excursion = np.maximum(hi - centre[:, None], centre[:, None] - lo)
    excursion = np.where(finite, excursion, 0.0)
    kth = min(lo.shape[1] - 1, int(quantile * lo.shape[1]))
    return centre, np.partition(excursion, kth, axis=1)[:, kth]


def span_rows(
    lo: np.ndarray, hi: np.ndarray, *, y_top: float, y_bottom: float, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Image rows each column's span covers, joined to the previous column's span.

    Parameters
    ----------
    lo, hi : ndarray, shape (n_channels, n_columns)
        Column min and max in plot units (offsets and scale applied), in time order.
    y_top, y_bottom
        Plot values at the top edge of row 0 and at the bottom edge of row ``height - 1``.
    height
        Rows of the image.

    Returns
    -------
    first, last : ndarray of int32, shape (n_channels, n_columns)
        Inclusive row range of each span, clipped to the image; ``last < first`` where nothing
        is drawn (NaN column, or a span wholly outside the image). Each span reaches the
        previous column's span, so a steep trace stays one connected line.
    """
    scale = np.float32(height / (y_top - y_bottom))
    top = (np.float32(y_top) - hi) * scale
    bottom = (np.float32(y_top) - lo) * scale
    valid = np.isfinite(top) & np.isfinite(bottom)
    joined = valid[:, 1:] & valid[:, :-1]
    # Reach the previous span: down to its top if it is below, up to its bottom if above.
    reach_top = np.minimum(top[:, 1:], bottom[:, :-1])
    reach_bottom = np.maximum(bottom[:, 1:], top[:, :-1])
    np.copyto(top[:, 1:], reach_top, where=joined)
    np.copyto(bottom[:, 1:], reach_bottom, where=joined)
    # Clip in floats first, so a huge value cannot overflow the integer cast.
    np.copyto(top, np.float32(height), where=~valid)
    np.copyto(bottom, np.float32(-1), where=~valid)
    first = np.floor(np.clip(top, 0, height)).astype(np.int32)
    last = np.floor(np.clip(bottom, -1, height - 1)).astype(np.int32)
    return first, last


def paint_spans(
    image: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    colours: np.ndarray,
    columns: np.ndarray | None = None,
) -> int:
    """Paint each channel's column spans into ``image`` in its colour.

    Parameters
    ----------
    image : ndarray of uint32, shape (rows, row_length), C-contiguous
        RGBA pixels (one ``uint32`` each, as ImGui stores them). Pixels outside the spans are
        left as they are (clear them first).
    first, last : ndarray of int, shape (n_channels, n_columns)
        Inclusive row range of each span (:func:`span_rows`).
    colours : ndarray of uint32, shape (n_channels,)
        RGBA colour of each channel; where channels overlap, the later channel is on top.
    columns : ndarray of int, shape (n_columns,), optional
        Image column of each span column (default ``0 .. n_columns - 1``).

    Returns
    -------
    int
        Pixels painted.
    """
    if not image.flags.c_contiguous:
        raise ValueError("image must be C-contiguous (paint a whole texture buffer)")
    stride = image.shape[1]
    if columns is None:
        columns = np.arange(first.shape[1])
    lengths = np.maximum(last - first + 1, 0)
    per_channel = lengths.sum(axis=1)
    lengths = lengths.ravel()
    total = int(per_channel.sum())
    if total == 0:
        return 0
    index = np.int32 if image.size < 2**31 else np.int64
    top_pixel = (first.astype(index) * stride + columns.astype(index)).ravel()
    begins = np.cumsum(lengths, dtype=index) - lengths  # where each span starts in the run
    # Pixel p of the run, j-th of its span s: top_pixel[s] + j * stride, j = p - begins[s].
    flat = np.arange(total, dtype=index) * index(stride)
    flat += np.repeat(top_pixel - begins * index(stride), lengths)
    # Spans are in channel-major order, so each channel's pixels are one contiguous run.
    image.reshape(-1)[flat] = np.repeat(colours.astype(np.uint32), per_channel)
    return total


class IncrementalNotch:
    """A causal IIR notch whose state is carried from one chunk of samples to the next.

    Filtering the whole shown window every frame costs too much (``sosfiltfilt`` over 64 x
    10,240 samples: ~25 ms, a causal ``sosfilt``: ~7 ms on the 2-core machine); the viewer
    filters only the samples that arrived since the previous frame. The filter is a
    second-order :func:`scipy.signal.iirnotch` of quality ``q``: its phase shift stays within
    a band of ``freq / q`` Hz around the notch. :meth:`start` begins at the steady state of the
    first sample; the notch settles within about ``q / (pi * freq)`` s (0.2 s at 50 Hz).

    Parameters
    ----------
    freq
        Frequency removed (Hz): 50 or 60 for mains interference; not applied at or above
        Nyquist.
    fs
        Sample rate (Hz).
    q
        Quality factor (``freq / bandwidth``).
    """

    def __init__(self, freq: float, fs: float, *, q: float = 30.0):
        self.freq, self.fs = float(freq), float(fs)
        #: False when ``freq`` is at or above Nyquist (or not > 0): the samples pass unchanged.
        self.active = active = 0 < self.freq < self.fs / 2
        b, a = signal.iirnotch(self.freq, q, self.fs) if active else ([1.0, 0.0], [1.0, 0.0])
        self._sos = signal.tf2sos(b, a)
        self._zi_unit = signal.sosfilt_zi(self._sos)  # (n_sections, 2) for a unit step
        self._zi: np.ndarray | None = None

    def start(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x (n_samples, n_channels)`` from a fresh state; float32, NaN kept as NaN."""
        self._zi = None
        return self.step(x)

    def step(self, x: np.ndarray) -> np.ndarray:
        """Filter the samples that follow the previous call's (NaN enter the filter as 0)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            return np.empty(x.shape, dtype=np.float32)
        nan = np.isnan(x)
        has_nan = bool(nan.any())
        if has_nan:
            x = np.where(nan, 0.0, x)
        if self._zi is None or self._zi.shape[2] != x.shape[1]:
            self._zi = self._zi_unit[:, :, None] * x[0]
        y, self._zi = signal.sosfilt(self._sos, x, axis=0, zi=self._zi)
        y = _as_float32(y)
        if has_nan:
            y[nan] = np.nan
        return y


class LiveColumns:
    """Min/max pixel columns of a stream's latest ``n_view`` samples, updated incrementally.

    Columns are kept in a circular store: global column ``g`` at position ``g % n_columns``.
    :meth:`update` copies from the ring buffer only the samples that arrived since the previous
    call (found by the ring's count of samples written, read in the same copy, so repeated,
    backwards or NaN timestamps neither skip nor repeat a sample), notches them, and decimates
    the columns they complete. It rebuilds everything from the ring when it cannot continue:
    first call, or more new samples than the ring still holds (or than the view spans). A
    rebuild reads the column before the view's oldest too, so every kept column is whole.

    Each column also keeps the timestamps of its first and last sample, to place label lines
    by sample (:meth:`place`) rather than by time since the newest sample (which a gap shifts).

    Parameters
    ----------
    n_channels, n_columns, n_view
        Channels, pixel columns and samples the view spans.
    notch
        Applied to the samples before decimation, or None.

    Attributes
    ----------
    lo, hi : ndarray of float32, shape (n_channels, n_columns)
        The circular store (NaN: no data).
    t_first, t_last : ndarray of float64, shape (n_columns,)
        Timestamps of each column's first and last sample, same positions (NaN: no data).
    g_end
        Global index of the next column to complete; the store holds ``g_end - n_columns`` to
        ``g_end - 1``.
    end
        The ring's count of samples written when it was last read: the absolute index after
        the newest sample received.
    last_ts
        Timestamp of the newest sample received (s).
    n_received
        Samples received since the last rebuild, counting the rebuild's (at most ``n_view``).
    """

    def __init__(
        self, n_channels: int, n_columns: int, n_view: int, notch: IncrementalNotch | None
    ):
        self.n_channels, self.n_columns, self.n_view = n_channels, n_columns, n_view
        self.notch = notch
        self.lo = np.full((n_channels, n_columns), np.nan, dtype=np.float32)
        self.hi = self.lo.copy()
        self.t_first = np.full(n_columns, np.nan)
        self.t_last = self.t_first.copy()
        self.g_end = 0
        self.end = 0
        self.last_ts: float | None = None
        self.n_received = 0
        self._pending = np.empty((0, n_channels), dtype=np.float32)
        self._pending_ts = np.empty(0)
        self._pending_first = 0

    def update(self, ring: RingBuffer) -> np.ndarray | None:
        """Take in what ``ring`` received since the previous call.

        Returns
        -------
        ndarray of int64 or None
            Global indices of the columns completed (possibly none); ``None`` after a rebuild,
            when every column was decimated again.
        """
        if self.last_ts is not None:
            want = min(ring.capacity, max(0, ring.n_written - self.end) + _OVERLAP)
            data, ts, written = ring.latest_counted(want)
            n_new = written - self.end
            if 0 <= n_new <= ts.shape[0] and n_new < self.n_view:
                k = ts.shape[0] - n_new
                return self._advance(data[k:], ts[k:])
        # One column more than the view (and the sample before it): the oldest is whole.
        extra = -(-self.n_view // self.n_columns) + 1
        data, ts, written = ring.latest_counted(self.n_view + extra)
        if ts.shape[0] == 0:
            return np.empty(0, dtype=np.int64)
        self._rebuild(data, ts, written)
        return None

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of :attr:`lo` and :attr:`hi` in time order, oldest column first."""
        p = self.g_end % self.n_columns
        return np.roll(self.lo, -p, axis=1), np.roll(self.hi, -p, axis=1)

    def right_edge_time(self, fs: float) -> float:
        """Timestamp (s) just after the newest sample of the newest complete column."""
        assert self.last_ts is not None
        newest_edge = int(column_edges(self.g_end, self.g_end, self.n_columns, self.n_view)[0])
        return self.last_ts + (1 + newest_edge - self.end) / fs

    def place(self, times: np.ndarray, fs: float) -> np.ndarray:
        """Where timestamps fall in the view: seconds from its right edge, by sample.

        A time is placed in the column whose first sample's timestamp is the latest not after
        it, ``time - t_first`` into that column (at most to its end: a time in a gap goes to
        the gap's edge), the view's x axis counting ``1 / fs`` per sample. NaN for a time
        before the oldest column or after the newest complete one (or NaN).
        """
        times = np.asarray(times, dtype=np.float64)
        out = np.full(times.shape, np.nan)
        p, w = self.g_end % self.n_columns, self.n_columns
        t_first, t_last = np.roll(self.t_first, -p), np.roll(self.t_last, -p)
        ok = np.flatnonzero(np.isfinite(t_first) & np.isfinite(t_last))
        if ok.size == 0 or times.size == 0:
            return out
        edges = column_edges(self.g_end - w, self.g_end, w, self.n_view)
        i = np.searchsorted(t_first[ok], times, side="right") - 1
        c = ok[np.maximum(i, 0)]
        shown = (i >= 0) & (times <= t_last[ok[-1]] + 1 / fs)  # NaN compares False
        span = (edges[c + 1] - edges[c]) / fs
        x = (edges[c] - edges[-1]) / fs + np.clip(times - t_first[c], 0, span)
        out[shown] = x[shown]
        return out

    def _rebuild(self, data: np.ndarray, ts: np.ndarray, end: int) -> None:
        values = self.notch.start(data) if self.notch is not None else data
        self.end, self.last_ts = end, float(ts[-1])
        self.n_received = min(self.n_view, ts.shape[0])
        self.g_end = (end * self.n_columns) // self.n_view
        self._pending, self._pending_first = _as_float32(values), end - ts.shape[0]
        self._pending_ts = np.asarray(ts, dtype=np.float64)
        self._complete(self.g_end - self.n_columns)

    def _advance(self, new: np.ndarray, ts: np.ndarray) -> np.ndarray:
        n_new = ts.shape[0]
        if n_new == 0:
            return np.empty(0, dtype=np.int64)
        values = self.notch.step(new) if self.notch is not None else new
        self.end += n_new
        self.last_ts = float(ts[-1])
        self.n_received = min(self.n_view, self.n_received + n_new)
        self._pending = np.concatenate([self._pending, _as_float32(values)])
        self._pending_ts = np.concatenate([self._pending_ts, ts])
        g_stop = (self.end * self.n_columns) // self.n_view
        g_start = max(self.g_end, g_stop - self.n_columns)
        self.g_end = g_stop
        return self._complete(g_start)

    def _complete(self, g_start: int) -> np.ndarray:
        """Decimate columns ``g_start .. g_end - 1`` from the pending samples; keep the rest."""
        edges = column_edges(g_start, self.g_end, self.n_columns, self.n_view)
        lo, hi = minmax_columns(self._pending, self._pending_first, edges)
        columns = np.arange(g_start, self.g_end)
        positions = columns % self.n_columns
        self.lo[:, positions] = lo
        self.hi[:, positions] = hi
        n = self._pending_ts.shape[0]
        if n and columns.size:
            ends = edges[1:] - self._pending_first
            first = np.clip(np.minimum(edges[:-1] - self._pending_first, ends - 1), 0, n - 1)
            has = ends >= 1  # the column (or the sample before an empty one) is pending
            self.t_first[positions] = np.where(has, self._pending_ts[first], np.nan)
            self.t_last[positions] = np.where(
                has, self._pending_ts[np.clip(ends - 1, 0, n - 1)], np.nan
            )
        # Keep from the sample before the next column (an empty column repeats it).
        keep = max(0, int(edges[-1]) - 1 - self._pending_first)
        self._pending = self._pending[keep:]
        self._pending_ts = self._pending_ts[keep:]
        self._pending_first += keep
        return columns


def paint_columns(
    image: np.ndarray,
    live: LiveColumns,
    g_start: int,
    g_stop: int,
    *,
    join: bool,
    centre: np.ndarray,
    gain: np.ndarray,
    y_range: tuple[float, float],
    height: int,
    colours: np.ndarray,
) -> None:
    """Paint the global columns ``g_start .. g_stop - 1`` of ``live`` into its circular image.

    Column ``g`` goes to image column ``g % n_columns``; channel ``k`` is drawn at
    ``n_channels - 1 - k + gain_k * (value - centre_k)`` plot units over ``y_range`` (top,
    bottom) mapped to rows ``0 .. height``. With ``join``, the first column is joined to the
    one before it (already painted). Clear the columns first.
    """
    positions = np.arange(g_start - join, g_stop) % live.n_columns
    n = live.n_channels
    offsets = (n - 1.0 - np.arange(n, dtype=np.float32))[:, None]
    scale = gain.astype(np.float32)[:, None]
    shift = centre.astype(np.float32)[:, None]
    first, last = span_rows(
        offsets + (live.lo[:, positions] - shift) * scale,
        offsets + (live.hi[:, positions] - shift) * scale,
        y_top=y_range[0],
        y_bottom=y_range[1],
        height=height,
    )
    if join:
        first, last, positions = first[:, 1:], last[:, 1:], positions[1:]
    paint_spans(image, first, last, colours, positions)
