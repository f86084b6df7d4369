"""``plot_session``: stacked traces, label segments and gaps, from real sessions on disk."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from matplotlib.figure import Figure

from labsession.errors import SessionError
from labsession.recording import (
    UNLABELLED,
    Session,
    StreamInfo,
    _plot_data,
    open_session_store,
    plot_session,
)
from labsession.recording._plot_data import parse_channels, read_traces

FS = 1000.0
T0 = 500.0
CLASSES = ["Rest", "Fist", "Open"]
# (time from T0 in s, class index); the pause (-1) is not shaded or named.
LABELS = [(0.0, 0), (1.5, 1), (2.5, UNLABELLED), (2.8, 2), (4.5, 0)]
GAP = (3.0, 4.0)  # seconds from T0 where the stream delivered nothing


def _write(base, *, n_channels=4, seconds=6.0, fs=FS, gap=GAP, labels=LABELS, seed=0):
    """A labsession-written session folder: ``emg`` with one gap, ``aux`` at 50 Hz, labels."""
    rng = np.random.default_rng(seed)
    n = round(seconds * fs)
    ts = T0 + np.arange(n) / fs
    if gap is not None:
        ts[ts >= T0 + gap[0]] += gap[1] - gap[0]
    data = rng.standard_normal((n, n_channels)).astype(np.float32)
    data *= np.arange(1, n_channels + 1, dtype=np.float32)  # different scales per channel
    session = Session(base, class_names=CLASSES)
    session.init_stream("emg", StreamInfo(n_channels, fs))
    session.init_stream("aux", StreamInfo(2, 50.0))
    step = max(1, round(fs / 10))
    for start in range(0, n, step):
        session.append("emg", data[start : start + step], ts[start : start + step])
    n_aux = round(seconds * 50)
    session.append(
        "aux", rng.standard_normal((n_aux, 2)).astype(np.float32), T0 + np.arange(n_aux) / 50
    )
    for t, cls in labels:
        session.add_label(cls, timestamp=T0 + t)
    session.close()
    return session.path, data, ts


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("plot"))


def _gap_patches(ax):
    return [p for p in ax.patches if p.get_hatch()]


def _label_patches(ax):
    return [p for p in ax.patches if not p.get_hatch()]


def _x_extent(patch):
    xs = patch.get_path().transformed(patch.get_patch_transform()).vertices[:, 0]
    return float(xs.min()), float(xs.max())


def test_one_line_per_channel_labels_named_in_order_and_gap_marked(recorded):
    path, _, ts = recorded
    fig = plot_session(path, width_px=8000)  # more pixels than samples: plain lines
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 4
    assert not ax.collections
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ch 0", "ch 1", "ch 2", "ch 3"]
    # Time axis in seconds from the first sample: the lines hold every sample at its time.
    for line in ax.lines:
        np.testing.assert_allclose(line.get_xdata(), ts - ts[0])
    assert ax.get_xlim() == pytest.approx((0.0, ts[-1] - ts[0]))
    assert "(s)" in ax.get_xlabel()
    # The labels: named in order (the pause is not), one shaded span each, a colour per class.
    assert [t.get_text() for t in ax.texts] == ["Rest", "Fist", "Open", "Rest"]
    spans = _label_patches(ax)
    assert np.array([_x_extent(p) for p in spans]) == pytest.approx(
        np.array([(0.0, 1.5), (1.5, 2.5), (2.8, 4.5), (4.5, ts[-1] - ts[0])])
    )
    colours = [p.get_facecolor() for p in spans]
    assert colours[0] == colours[3]
    assert len({colours[0], colours[1], colours[2]}) == 3
    # The gap of the integrity record, hatched, with a legend entry.
    with open_session_store(path) as store:
        record = store.integrity("emg")
    assert record.n_gaps == 1
    (gap,) = _gap_patches(ax)
    start, end = record.gaps[0]
    assert _x_extent(gap) == pytest.approx((start - ts[0], end - ts[0]))
    assert _x_extent(gap) == pytest.approx((GAP[0] - 0.001, GAP[1]), abs=1e-6)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 1
    assert legend[0].startswith("gap")


def test_traces_keep_their_channel_and_stay_in_their_lane(recorded):
    path, data, _ = recorded
    fig = plot_session(path, channels=[3, 0], width_px=8000)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ch 3", "ch 0"]
    top, bottom = (np.asarray(line.get_ydata()) for line in ax.lines)
    # Channel 3 on top (lane 1), channel 0 below (lane 0); each within half a lane.
    assert np.all(np.abs(top - 1.0) <= 0.5)
    assert np.all(np.abs(bottom) <= 0.5)
    # Scaled, not reshaped: a channel's trace is a linear function of its samples (but for
    # the few clipped beyond the 1st-99th percentile range).
    inside = np.abs(top - 1.0) < 0.449
    assert np.corrcoef(top[inside], data[inside, 3])[0, 1] > 0.999


def test_window_and_channel_selection(recorded):
    path, _, _ = recorded
    fig = plot_session(path, channels="1:3", start=1.0, end=2.0, width_px=8000)
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((1.0, 2.0))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ch 1", "ch 2"]
    assert len(ax.lines) == 2
    x = ax.lines[0].get_xdata()
    assert x.min() >= 1.0
    assert x.max() <= 2.0
    assert len(x) == 1001  # 1.000 ... 2.000 s
    assert [t.get_text() for t in ax.texts] == ["Rest", "Fist"]  # Rest from before the window
    assert _x_extent(_label_patches(ax)[0]) == pytest.approx((1.0, 1.5))
    assert not _gap_patches(ax)  # the gap is after the window
    assert ax.get_legend() is None


def test_long_session_is_a_min_max_envelope_of_bounded_size(tmp_path):
    path, data, ts = _write(tmp_path, n_channels=3, seconds=20.0, fs=2000.0, gap=None)
    width = 600
    fig = plot_session(path, width_px=width)
    ax = fig.axes[0]
    assert len(ax.collections) == 3
    assert not ax.lines
    for collection in ax.collections:
        points = sum(len(p.vertices) for p in collection.get_paths())
        assert 0 < points <= 2 * width
    # The envelope is the per-column min and max of the samples (checked on the raw values).
    with open_session_store(path) as store:
        columns = 480
        traces = read_traces(store, "emg", [0, 2], start=None, end=None, columns=columns)
    assert traces.envelope
    assert traces.low.shape == (2, columns)
    col = np.minimum(((ts - ts[0]) * columns / (ts[-1] - ts[0])).astype(int), columns - 1)
    for k, channel in enumerate((0, 2)):
        expected_low = np.full(columns, np.inf)
        expected_high = np.full(columns, -np.inf)
        np.minimum.at(expected_low, col, data[:, channel])
        np.maximum.at(expected_high, col, data[:, channel])
        np.testing.assert_array_equal(traces.low[k], expected_low)
        np.testing.assert_array_equal(traces.high[k], expected_high)
    np.testing.assert_allclose(traces.t, (np.arange(columns) + 0.5) * (ts[-1] - ts[0]) / columns)


def test_long_session_is_read_in_bounded_memory(tmp_path, monkeypatch):
    path, _, _ = _write(tmp_path, n_channels=8, seconds=150.0, fs=2048.0, gap=None)
    session_bytes = 150 * 2048 * 8 * 4  # 9.8 MB as stored (float32)
    monkeypatch.setattr(_plot_data, "BLOCK_BYTES", 256 * 1024)
    plot_session(path, width_px=400)  # imports and caches outside the measurement
    with open_session_store(path) as store:
        store.n_samples("emg")
        tracemalloc.start()
        try:
            fig = plot_session(store, width_px=1600)
            _, plot_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            baseline, _ = tracemalloc.get_traced_memory()
            store.get_continuous("emg")
            _, whole_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(fig.axes[0].collections) == 8
    assert whole_peak - baseline >= session_bytes  # reading it all holds it all
    # One 256 KiB block at a time plus the figure: about 1.4 MB, whatever the length.
    assert plot_peak < session_bytes / 5, (plot_peak, session_bytes)


def test_gaps_found_in_the_timestamps_without_a_saved_record(tmp_path):
    path, _, _ = _write(tmp_path)
    meta_file = path / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["integrity"]  # as MyoGestic and older labsession versions write it
    meta_file.write_text(json.dumps(meta))
    ax = plot_session(path, width_px=8000).axes[0]
    (gap,) = _gap_patches(ax)
    assert _x_extent(gap) == pytest.approx((GAP[0] - 0.001, GAP[1]), abs=1e-6)
    assert "from the timestamps" in ax.get_legend().get_texts()[0].get_text()


def _clock_reset_session(base, fs=100.0):
    """2 s of ones stamped from 5000 s, then 2 s of twos from 10 s: the device's clock started
    over (a step back deeper than the repair moves, stored as given)."""
    with Session(base, class_names=["Rest", "Fist"]) as session:
        session.init_stream("emg", StreamInfo(n_channels=2, fs=fs))
        session.add_label(0, timestamp=5000.0)
        session.add_label(1, timestamp=10.5)
        n = round(2 * fs)
        session.append("emg", np.ones((n, 2), np.float32), 5000 + np.arange(n) / fs)
        session.append("emg", np.full((n, 2), 2, np.float32), 10 + np.arange(n) / fs)
    assert session.integrity("emg").n_unrepaired == 1
    return session.path


@pytest.mark.parametrize("fs", [100.0, 10_000.0], ids=["samples", "envelope"])
def test_a_clock_reset_is_plotted_on_the_time_range_the_stamps_span(tmp_path, fs):
    """Each sample is drawn at its own stamp, from the earliest to the latest, with a note;
    a window keeps the samples stamped inside it."""
    path = _clock_reset_session(tmp_path, fs)
    n = round(2 * fs)
    with open_session_store(path) as store:
        traces = read_traces(store, "emg", [0], start=None, end=None, columns=500)
        assert (traces.t0, traces.n_back, traces.rows) == (10.0, 1, 2 * n)
        assert traces.duration == pytest.approx(4990 + (n - 1) / fs)
        finite = np.isfinite(traces.low[0])
        assert set(traces.low[0][finite]) == {1.0, 2.0}
        assert traces.t[finite].min() < traces.duration / 100  # a pixel column or less
        assert traces.t[finite].max() > traces.duration * 0.99
        window = read_traces(store, "emg", [0], start=0.5, end=1.5, columns=500)
        assert window.rows == round(fs) + 1
        assert set(window.low[0][np.isfinite(window.low[0])]) == {2.0}
        late = read_traces(store, "emg", [0], start=4990.5, end=None, columns=500)
        assert set(late.low[0][np.isfinite(late.low[0])]) == {1.0}
    ax = plot_session(path).axes[0]
    assert "timestamps go back 1 time(s)" in ax.get_xlabel()
    assert ax.get_xlim()[1] == pytest.approx(traces.duration)


def test_open_store_other_stream_and_given_axes(recorded):
    path, _, _ = recorded
    other = Figure(figsize=(6, 3), dpi=100)
    ax = other.add_subplot()
    with open_session_store(path) as store:
        fig = plot_session(store, stream="aux", ax=ax)
        assert store.n_samples("aux") == 300  # still open
    assert fig is other
    assert len(ax.lines) == 2  # 300 samples, fewer than the axes' pixel columns
    assert "aux" in ax.get_title(loc="left")


def test_myogestic_session_plots(myogestic_session):
    fig = plot_session(myogestic_session, width_px=800)
    ax = fig.axes[0]
    assert len(ax.collections) == 8  # 20,000 samples of 16 channels: the first 8, as envelopes
    assert [t.get_text() for t in ax.texts][:3] == ["Rest", "Fist", "Rest"]


def test_parse_channels():
    assert parse_channels("0:8") == slice(0, 8)
    assert parse_channels("4:") == slice(4, None)
    assert parse_channels("3") == [3]
    assert parse_channels("0,2, 5") == [0, 2, 5]
    assert parse_channels("0:2,6:8") == [0, 1, 6, 7]
    for bad in ("", "a", "1:x", "-1", "3:1", "1,", "2:,5", "1:2:3"):
        with pytest.raises(ValueError, match="channels"):
            parse_channels(bad)


def test_bad_arguments_name_the_value(recorded, tmp_path):
    path, _, _ = recorded
    with pytest.raises(ValueError, match=r"9 is not a channel of stream 'emg'.*0 to 3"):
        plot_session(path, channels=[9])
    with pytest.raises(ValueError, match="selects no channel"):
        plot_session(path, channels="6:")
    with pytest.raises(ValueError, match="end must be after start"):
        plot_session(path, start=2.0, end=1.0)
    with pytest.raises(ValueError, match="start 50 s is at or past the end"):
        plot_session(path, start=50.0)
    with pytest.raises(ValueError, match="width_px"):
        plot_session(path, width_px=10)
    with pytest.raises(KeyError, match="glove"):
        plot_session(path, stream="glove")
    with pytest.raises(SessionError, match="no such session"):
        plot_session(tmp_path / "missing")
