"""The signal viewer's numerics against slow, obvious references."""

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from labsession.acquisition import RingBuffer
from labsession.widgets._decimate import (
    IncrementalNotch,
    LiveColumns,
    channel_extent,
    column_edges,
    minmax_columns,
    paint_spans,
    span_rows,
)


def reference_minmax(data, first, edges):
    """Min/max per column with a loop over columns and channels (the rules spelled out)."""
    n_samples, n_channels = data.shape
    n_columns = len(edges) - 1
    lo = np.full((n_channels, n_columns), np.nan)
    hi = np.full((n_channels, n_columns), np.nan)
    for i in range(n_columns):
        start, stop = int(edges[i]) - first, int(edges[i + 1]) - first
        if stop < 1 or n_samples == 0:
            continue  # not even the sample before the column is there
        if stop <= start:
            start = stop - 1  # an empty column holds the sample before it
        start = max(start, 0)
        for k in range(n_channels):
            values = data[start:stop, k].astype(float)
            values = values[~np.isnan(values)]
            if values.size:
                lo[k, i], hi[k, i] = values.min(), values.max()
    return lo, hi


def assert_same(actual, expected):
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual[~np.isnan(actual)], expected[~np.isnan(expected)], rtol=1e-6)


# -- column edges ------------------------------------------------------------------------------
@pytest.mark.parametrize(("n_columns", "n_view"), [(1231, 10240), (7, 7), (100, 37), (3, 1000)])
def test_column_edges_tile_the_samples_with_floor_or_ceil_sizes(n_columns, n_view):
    edges = column_edges(-n_columns, 3 * n_columns, n_columns, n_view)
    sizes = np.diff(edges)
    assert set(np.unique(sizes)) <= {math.floor(n_view / n_columns), math.ceil(n_view / n_columns)}
    # n_columns consecutive columns always span exactly n_view samples.
    assert np.all(edges[n_columns:] - edges[:-n_columns] == n_view)
    # Any sub-range gives the same edges: a column never changes as the view scrolls.
    np.testing.assert_array_equal(column_edges(5, 9, n_columns, n_view), edges[n_columns + 5 :][:5])


# -- min/max per column ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n_samples", "n_channels", "n_columns", "n_view", "first"),
    [
        (10240, 64, 1231, 10240, 0),  # the common case: ~8.3 samples per column
        (1001, 3, 97, 1001, 12345),  # odd lengths, far into the stream
        (333, 5, 1000, 333, 7),  # fewer samples than columns: values are held
        (600, 2, 64, 1000, 400),  # the ring holds less than the view: old columns are NaN
        (1, 1, 5, 1, 0),
    ],
)
def test_minmax_columns_matches_a_loop(n_samples, n_channels, n_columns, n_view, first):
    rng = np.random.default_rng(n_samples)
    data = rng.standard_normal((n_samples, n_channels)).astype(np.float32)
    end = first + n_samples
    g_end = end * n_columns // n_view
    edges = column_edges(g_end - n_columns, g_end, n_columns, n_view)
    lo, hi = minmax_columns(data, first, edges)
    assert lo.shape == hi.shape == (n_channels, n_columns)
    assert lo.dtype == np.float32
    ref_lo, ref_hi = reference_minmax(data, first, edges)
    assert_same(lo, ref_lo)
    assert_same(hi, ref_hi)


def test_minmax_columns_skips_nan_and_keeps_integer_values():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((500, 4))
    data[rng.random(data.shape) < 0.3] = np.nan
    data[100:200, 2] = np.nan  # whole columns of NaN stay NaN
    edges = column_edges(0, 50, 50, 500)
    lo, hi = minmax_columns(data, 0, edges)
    ref_lo, ref_hi = reference_minmax(data, 0, edges)
    assert_same(lo, ref_lo)
    assert_same(hi, ref_hi)
    assert np.isnan(lo[2, 11:19]).all()

    ints = rng.integers(-30000, 30000, (500, 3)).astype(np.int16)
    lo, hi = minmax_columns(ints, 0, edges)
    ref_lo, ref_hi = reference_minmax(ints, 0, edges)
    assert_same(lo, ref_lo)
    assert_same(hi, ref_hi)


@settings(max_examples=60)
@given(
    n_samples=st.integers(0, 300),
    n_channels=st.integers(1, 4),
    n_columns=st.integers(1, 80),
    n_view=st.integers(1, 400),
    first=st.integers(0, 10_000),
    seed=st.integers(0, 2**16),
)
def test_minmax_columns_property(n_samples, n_channels, n_columns, n_view, first, seed):
    data = np.random.default_rng(seed).standard_normal((n_samples, n_channels))
    end = first + n_samples
    g_end = end * n_columns // n_view
    edges = column_edges(g_end - n_columns, g_end, n_columns, n_view)
    lo, hi = minmax_columns(data, first, edges)
    ref_lo, ref_hi = reference_minmax(data, first, edges)
    assert_same(lo, ref_lo)
    assert_same(hi, ref_hi)


# -- scale, rows, painting ---------------------------------------------------------------------
def test_channel_extent_centre_and_robust_half_range():
    t = np.arange(4000) / 1000
    sine = 3.0 + 2.0 * np.sin(2 * np.pi * 7 * t)
    spike = np.zeros_like(t)
    spike[1000] = 100.0  # one column: the 99th percentile ignores it
    data = np.stack([sine, spike, np.full_like(t, np.nan)], axis=1)
    lo, hi = minmax_columns(data, 0, column_edges(0, 400, 400, 4000))
    centre, half = channel_extent(lo, hi)
    assert centre[0] == pytest.approx(3.0, abs=0.1)
    assert half[0] == pytest.approx(2.0, abs=0.05)
    assert half[1] < 1.0
    assert half[2] == 0.0  # no finite column: no scale, no warning


def test_span_rows_join_neighbours_and_drop_nan_or_outside():
    nan = np.nan
    lo = np.array([[0.9, 0.1, 0.1, 5.0, nan, 0.5, -7.0, nan, 5.0]], dtype=np.float32)
    hi = np.array([[0.9, 0.2, 0.9, 6.0, nan, 0.5, -6.0, nan, 6.0]], dtype=np.float32)
    first, last = span_rows(lo, hi, y_top=1.0, y_bottom=0.0, height=10)
    # Row r covers values (1 - (r + 1) / 10, 1 - r / 10].
    spans = [(int(a), int(b)) if b >= a else None for a, b in zip(first[0], last[0], strict=True)]
    assert spans == [
        (1, 1),
        (1, 9),  # 0.1..0.2 reaches up to the previous 0.9
        (1, 9),
        (0, 1),  # off the top: the line climbs from the previous column to the edge
        None,  # NaN: nothing
        (5, 5),  # after a gap: not joined
        (5, 9),  # off the bottom, joined
        None,
        None,  # off the image after a gap: nothing
    ]


def reference_paint(shape, first, last, colours, columns):
    image = np.zeros(shape, dtype=np.uint32)
    for k in range(first.shape[0]):
        for i, c in enumerate(columns):
            for row in range(first[k, i], last[k, i] + 1):
                image[row, c] = colours[k]
    return image


def test_paint_spans_matches_a_loop_including_overlaps_and_columns():
    rng = np.random.default_rng(3)
    first = rng.integers(0, 40, (5, 30))
    last = first + rng.integers(-3, 12, (5, 30))  # some empty spans
    last = np.minimum(last, 39)
    colours = np.arange(1, 6, dtype=np.uint32) * 0x01010101
    columns = (np.arange(30) + 17) % 64  # wrapping, as in the circular texture
    image = np.zeros((48, 64), dtype=np.uint32)
    painted = paint_spans(image, first, last, colours, columns)
    expected = reference_paint(image.shape, first, last, colours, columns)
    np.testing.assert_array_equal(image, expected)
    assert painted == int(np.maximum(last - first + 1, 0).sum())
    with pytest.raises(ValueError, match="C-contiguous"):
        paint_spans(image[:, :10], first, last, colours)


# -- notch -------------------------------------------------------------------------------------
def test_incremental_notch_equals_one_pass_and_removes_mains():
    fs = 2048.0
    rng = np.random.default_rng(4)
    t = np.arange(int(4 * fs)) / fs
    x = np.stack([np.sin(2 * np.pi * 50 * t) * 10 + rng.standard_normal(t.size)] * 2, axis=1)
    one = IncrementalNotch(50, fs).start(x)
    notch = IncrementalNotch(50, fs)
    parts = [notch.start(x[:100])]
    bounds = np.cumsum(rng.integers(1, 300, 40)) + 100
    bounds = bounds[bounds < len(x)]
    for a, b in zip(np.r_[100, bounds], np.r_[bounds, len(x)], strict=True):
        parts.append(notch.step(x[a:b]))
    np.testing.assert_allclose(np.concatenate(parts), one, rtol=1e-5, atol=1e-5)
    # After the settling time (q / (pi * f) = 0.19 s) the hum is gone: only the noise is left.
    bin_50 = round(50 * (len(x) - int(fs)) / fs)
    hum = np.abs(np.fft.rfft(one[int(fs) :, 0]))[bin_50]
    raw = np.abs(np.fft.rfft(x[int(fs) :, 0]))[bin_50]
    assert hum < raw / 100
    b, a = signal.iirnotch(50, 30, fs)
    assert np.allclose(signal.tf2sos(b, a), notch._sos)


def test_incremental_notch_keeps_nan_out_of_its_state():
    x = np.ones((200, 2))
    x[50:60, 0] = np.nan
    y = IncrementalNotch(50, 1000).start(x)
    assert np.isnan(y[50:60, 0]).all()
    assert np.isfinite(y[60:, 0]).all()
    assert np.isfinite(y[:, 1]).all()
    assert np.isfinite(IncrementalNotch(600, 1000).start(x[:, 1:])).all()  # above Nyquist: off


# -- live columns over a real ring buffer ------------------------------------------------------
def decimate_all(data, n_columns, n_view, end):
    """Reference: the last complete columns decimated from the whole stream at once."""
    g_end = end * n_columns // n_view
    edges = column_edges(g_end - n_columns, g_end, n_columns, n_view)
    return minmax_columns(data, 0, edges)


@pytest.mark.parametrize("notch", [False, True])
def test_live_columns_incremental_equals_decimating_everything(notch):
    fs, n_channels, n_columns, n_view = 1000.0, 3, 97, 1500
    rng = np.random.default_rng(5)
    total = 9000
    data = rng.standard_normal((total, n_channels)).astype(np.float32)
    ts = 100.0 + np.arange(total) / fs
    ring = RingBuffer(2 * n_view, n_channels)
    live = LiveColumns(n_channels, n_columns, n_view, IncrementalNotch(50, fs) if notch else None)
    written, results = 0, []
    while written < total:
        n = int(rng.integers(1, 120))
        ring.write(data[written : written + n], ts[written : written + n])
        written = min(total, written + n)
        results.append(live.update(ring))
    assert results[0] is None  # the first call rebuilds from all the ring holds (from sample 0)
    assert all(r is not None for r in results[1:])  # then it only continues
    assert live.end == total
    assert live.last_ts == ts[-1]
    shown = data
    if notch:
        # Started on the first chunk, then stepped: one causal pass over the whole stream.
        shown = IncrementalNotch(50, fs).start(data)
    lo, hi = live.ordered()
    ref_lo, ref_hi = decimate_all(shown, n_columns, n_view, total)
    np.testing.assert_allclose(lo, ref_lo, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hi, ref_hi, rtol=1e-5, atol=1e-5)
    # The right edge is just after the newest sample in a complete column.
    g_end = total * n_columns // n_view
    newest = column_edges(g_end, g_end, n_columns, n_view)[0] - 1
    assert live.right_edge_time(fs) == pytest.approx(ts[newest] + 1 / fs)


def test_live_columns_rebuild_after_a_gap_longer_than_the_ring():
    fs, n_channels, n_columns, n_view = 500.0, 2, 50, 400
    ring = RingBuffer(400, n_channels)
    live = LiveColumns(n_channels, n_columns, n_view, None)
    data = np.arange(3000, dtype=np.float32)[:, None].repeat(2, axis=1)
    ts = np.arange(3000) / fs
    ring.write(data[:300], ts[:300])
    assert live.update(ring) is None
    assert live.n_received == 300
    ring.write(data[300:2900], ts[300:2900])  # the previous newest sample is overwritten
    assert live.update(ring) is None  # rebuilt from what the ring holds
    lo, hi = live.ordered()
    # The ring kept samples 2500..2899; complete columns (8 samples each) end at 2895.
    assert np.nanmin(lo) == 2500
    assert np.nanmax(hi) == 2895
    assert live.g_end == 2900 * n_columns // n_view
    g_end = live.g_end
    ring.write(data[2900:], ts[2900:])
    updated = live.update(ring)
    np.testing.assert_array_equal(updated, np.arange(g_end, 3000 * n_columns // n_view))
    lo, hi = live.ordered()
    assert hi[0, -1] == 2999


# -- regressions of the review -----------------------------------------------------------------
def test_minmax_columns_cost_is_bounded_by_the_samples_not_the_edges():
    data = np.random.default_rng(0).standard_normal((4096, 16)).astype(np.float32)
    peaks = []
    for n_view in (8192, 10_000_000):  # the view spans 2x, or 2400x, what data holds
        end = 50_000_000
        g_end = end * 1200 // n_view
        edges = column_edges(g_end - 1200, g_end, 1200, n_view)
        first = int(edges[-1]) - 4096
        tracemalloc.start()
        lo, hi = minmax_columns(data, first, edges)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        ref_lo, ref_hi = reference_minmax(data, first, edges)
        np.testing.assert_array_equal(lo, ref_lo.astype(np.float32))
        np.testing.assert_array_equal(hi, ref_hi.astype(np.float32))
    # Before: ~8 MB, then a (width 8334 x 1200 x 16) block of ~640 MB.
    assert max(peaks) < 4 * data.nbytes


def test_float64_beyond_float32_is_clipped_without_a_warning():
    x = np.array([[1e300, -1e300, 1.0, np.inf]] * 6, dtype=np.float64).T  # (4, 6)
    f32 = np.finfo(np.float32).max
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = minmax_columns(x, 0, np.array([0, 2, 4]))
        ring = RingBuffer(64, 6, np.float64)
        ring.write(x, np.arange(4.0))
        live = LiveColumns(6, 2, 4, None)
        live.update(ring)
        ring.write(x, np.arange(4.0, 8.0))
        live.update(ring)
        IncrementalNotch(50, 1000).start(x)
    np.testing.assert_array_equal(lo[0], [-f32, 1.0])
    np.testing.assert_array_equal(hi[0], [f32, f32])
    np.testing.assert_array_equal(live.ordered()[1][0], [f32, f32])


def test_live_columns_rebuild_keeps_the_oldest_column_whole():
    n_columns, n_view = 7, 100
    ring = RingBuffer(1000, 1)
    data = np.arange(1000, dtype=np.float32)[:, None]
    ring.write(data[:503], np.arange(503.0))
    live = LiveColumns(1, n_columns, n_view, None)
    assert live.update(ring) is None
    lo, hi = live.ordered()
    ref_lo, ref_hi = decimate_all(data[:503], n_columns, n_view, 503)
    np.testing.assert_array_equal(lo, ref_lo)  # the oldest column too (it starts before 403)
    np.testing.assert_array_equal(hi, ref_hi)
    assert live.n_received == n_view


def test_live_columns_count_samples_whatever_the_timestamps():
    n_columns, n_view = 13, 200
    ring = RingBuffer(400, 2)
    live = LiveColumns(2, n_columns, n_view, None)
    rng = np.random.default_rng(3)
    data = rng.standard_normal((1500, 2)).astype(np.float32)
    done = 0
    for k, n in enumerate(rng.integers(1, 60, 40)):
        ts = [np.full(n, 5.0), np.full(n, np.nan), 10.0 - np.arange(n)][k % 3]
        ring.write(data[done : done + n], ts)
        done += n
        assert (live.update(ring) is None) == (k == 0)
    assert live.end == done
    lo, hi = live.ordered()
    ref_lo, ref_hi = decimate_all(data[:done], n_columns, n_view, done)
    np.testing.assert_array_equal(lo, ref_lo)
    np.testing.assert_array_equal(hi, ref_hi)


def test_live_columns_place_times_by_sample():
    fs, n_columns, n_view = 100.0, 10, 100
    ring = RingBuffer(200, 1)
    ts = np.r_[np.arange(50) / fs, 10.0 + np.arange(50) / fs]  # a 9.5 s gap at sample 50
    ring.write(np.zeros((100, 1), np.float32), ts)
    live = LiveColumns(1, n_columns, n_view, None)
    live.update(ring)
    x = live.place(np.array([0.0, 0.2, 5.0, 10.0, 10.49, 10.6, -1.0, np.nan]), fs)
    np.testing.assert_allclose(x[:5], [-1.0, -0.8, -0.5, -0.5, -0.01], atol=1e-9)
    assert np.isnan(x[5:]).all()  # after the newest sample, before the oldest, NaN
