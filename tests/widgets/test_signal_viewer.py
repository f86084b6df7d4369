"""The live signal viewer, drawn in real imgui + ImPlot frames over real App streams."""

import math
import queue
import tracemalloc

import numpy as np
import pytest
from imgui_bundle import imgui

from labsession.acquisition import App, Stream
from labsession.recording import StreamInfo, open_session_store
from labsession.sources import ReplaySource, Source, SyntheticSource
from labsession.testing import (
    GuiScript,
    ImguiFrames,
    record_synthetic_session,
    run_gui,
    wait_until,
)
from labsession.widgets import SignalViewer, _texture, signal_viewer
from labsession.widgets._decimate import column_edges, minmax_columns


class MainsSource(SyntheticSource):
    """Resting EMG plus a strong 50 Hz hum, continuous in phase across chunks."""

    def __init__(self, *args, hum=5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.hum, self._n = hum, 0

    def generate(self, n):
        t = (self._n + np.arange(n)) / self.info.fs
        self._n += n
        return super().generate(n) + (self.hum * np.sin(2 * np.pi * 50 * t))[:, None].astype(
            np.float32
        )


class GappySource(SyntheticSource):
    """Synthetic EMG with NaN samples: scattered ones, and all of channel 1 in some chunks."""

    def generate(self, n):
        x = super().generate(n)
        x[::7, 0] = np.nan
        if self._rng.random() < 0.3:
            x[:, 1] = np.nan
        return x


@pytest.fixture
def make_app():
    """Apps whose streams are started; stopped (and any recording closed) after the test."""
    apps = []

    def make(*streams, class_names=("Rest", "Fist", "Open"), start=True):
        app = App("viewer-test", class_names=class_names)
        app.streams(*streams)
        apps.append(app)
        if start:
            app.start()
        return app

    yield make
    for app in apps:
        if app.ctx.state == "recording":
            app.stop_recording(pack=False)
        for stream in app.ctx.streams.values():
            stream.stop()


def has_samples(app, name, seconds):
    stream = app.ctx.streams[name]
    return lambda: stream.info is not None and stream.n_samples >= seconds * stream.info.fs


def draw(frames, viewer, ctx, n=1):
    for _ in range(n):
        with frames.frame():
            viewer.ui(ctx)


def peak_to_peak(viewer, newest_fraction=0.4):
    lo, hi = viewer.columns()
    keep = int(lo.shape[1] * newest_fraction)
    return np.nanmax(hi[:, -keep:], axis=1) - np.nanmin(lo[:, -keep:], axis=1)


def test_draws_a_live_stream_incrementally(make_app):
    app = make_app(Stream("emg", SyntheticSource(n_channels=8, fs=2048.0), window_seconds=2.5))
    assert wait_until(has_samples(app, "emg", 1.0), timeout=10)
    viewer = SignalViewer("emg")
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx)
        assert frames.vertex_count > 0
        first = viewer.last
        assert first is not None
        assert first.columns_updated is None  # built from the ring
        assert first.repainted
        lo, hi = viewer.columns()
        assert lo.shape == hi.shape
        assert lo.shape[0] == 8
        assert 1000 < lo.shape[1] < 1280  # one column per pixel of the plot
        assert np.all(lo[np.isfinite(lo)] <= hi[np.isfinite(lo)])
        end = app.ctx.streams["emg"].n_samples
        assert wait_until(lambda: app.ctx.streams["emg"].n_samples > end + 200, timeout=5)
        draw(frames, viewer, app.ctx)
        assert viewer.last.columns_updated > 0  # only the new columns
        assert frames.vertex_count > 0
    assert viewer.status.startswith("emg: 8 ch at 2048 Hz, last sample ")
    assert viewer.status.endswith(" ms ago")


def test_columns_are_the_min_max_of_the_replayed_samples(tmp_path, make_app):
    """A manually stepped replay: the viewer's columns equal decimating the recording."""
    path = record_synthetic_session(tmp_path, n_channels=4, fs=1000.0, repeats=1, pack=False)
    source = ReplaySource(path, "emg", speed=0, loop=False)
    app = make_app(Stream("emg", source, window_seconds=1.5))
    assert app.wait_connected(10) == []
    viewer = SignalViewer("emg", seconds=2.0)
    stream = app.ctx.streams["emg"]
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx)  # connected, nothing emitted yet
        assert viewer.status == "emg: connected, waiting for the first samples"
        emitted = 0
        for n in (700, 13, 1, 450, 999, 37):
            source.step(n)
            emitted += n
            assert wait_until(lambda e=emitted: stream.n_samples == e, timeout=5)
            draw(frames, viewer, app.ctx)
        assert viewer.last.columns_updated is not None  # continued, never rebuilt
        lo, hi = viewer.columns()
    with open_session_store(path) as store:
        data, _ = store.get_continuous("emg")
    n_columns = lo.shape[1]
    g_end = emitted * n_columns // 2000
    ref_lo, ref_hi = minmax_columns(
        data[:emitted], 0, column_edges(g_end - n_columns, g_end, n_columns, 2000)
    )
    np.testing.assert_array_equal(lo, ref_lo)
    np.testing.assert_array_equal(hi, ref_hi)


def test_notch_removes_injected_mains(make_app):
    source = MainsSource(n_channels=4, fs=2048.0, hum=5.0)
    app = make_app(Stream("emg", source, window_seconds=1.0))
    viewer = SignalViewer("emg", seconds=2.0)
    assert wait_until(has_samples(app, "emg", 2.0), timeout=10)
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx, 2)
        with_hum = peak_to_peak(viewer)
        assert viewer.last.notch_hz is None
        viewer.notch = True
        draw(frames, viewer, app.ctx, 2)
        notched = peak_to_peak(viewer)
        assert viewer.last.notch_hz == 50.0
        assert np.all(with_hum > 9.0)  # the hum is +-5
        assert np.all(notched * 10 < with_hum), (with_hum, notched)
        viewer.mains_hz = 60.0  # the wrong frequency leaves the hum
        draw(frames, viewer, app.ctx)
        assert np.all(peak_to_peak(viewer) > 5.0)


def test_autoscale_and_per_channel_scale(make_app):
    source = SyntheticSource(n_channels=6, fs=2048.0, classes=("Rest", "Fist"))
    source.set_class(1)  # channels differ in amplitude
    app = make_app(Stream("emg", source, window_seconds=1.0))
    viewer = SignalViewer("emg", seconds=1.0)
    assert wait_until(has_samples(app, "emg", 1.0), timeout=10)
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx)
        shared = viewer.last.units_per_channel
        assert np.all(shared == shared[0])  # one scale for all channels
        viewer.per_channel = True
        draw(frames, viewer, app.ctx)
        own = viewer.last.units_per_channel
        assert viewer.last.repainted
        assert own.max() == pytest.approx(shared[0], rel=0.1)  # the loudest keeps its scale
        assert own.min() < shared[0] / 2  # quieter ones are magnified
        viewer.autoscale = False  # holds the scale...
        draw(frames, viewer, app.ctx)
        np.testing.assert_array_equal(viewer.last.units_per_channel, own)
        viewer.units_per_channel = 10 * own  # ...or takes the one given
        draw(frames, viewer, app.ctx)
        np.testing.assert_allclose(viewer.last.units_per_channel, 10 * own)
        assert viewer.last.repainted


def test_label_lines_show_class_names_or_the_index(tmp_path, make_app):
    app = make_app(Stream("emg", SyntheticSource(n_channels=2, fs=1000.0), window_seconds=2.5))
    assert wait_until(has_samples(app, "emg", 0.5), timeout=10)
    app.start_recording(tmp_path)
    stream = app.ctx.streams["emg"]
    for index in (1, -1, 7):  # 7: a class the list does not have
        n = stream.n_samples
        app.add_label(index)
        assert wait_until(lambda n=n: stream.n_samples > n + 150, timeout=5)
    viewer = SignalViewer("emg")
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx)
    labels = viewer.last.labels
    assert [name for _, name in labels] == ["Fist", "(pause)", "#7"]
    events = app.ctx.session.label_track
    xs = [x for x, _ in labels]
    assert all(-5.0 <= x <= 0 for x in xs)
    # Spacing between lines is the spacing between the label timestamps.
    np.testing.assert_allclose(np.diff(xs), np.diff([e.timestamp for e in events]), atol=1e-9)


@pytest.mark.parametrize(("n_channels", "fs"), [(1, 2048.0), (256, 2048.0), (3, 100.0)])
def test_channel_counts_and_fewer_samples_than_pixels(make_app, n_channels, fs):
    app = make_app(Stream("emg", SyntheticSource(n_channels=n_channels, fs=fs), window_seconds=3))
    # More than the second checked below: with exactly 1 s the oldest of those columns may
    # still lie before the first sample.
    assert wait_until(has_samples(app, "emg", 1.2), timeout=10)
    viewer = SignalViewer("emg", seconds=5.0)
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx, 3)
        assert frames.vertex_count > 0
    lo, _ = viewer.columns()
    assert lo.shape[0] == n_channels
    # The newest second is drawn everywhere, even with 500 samples for ~1200 columns.
    assert np.isfinite(lo[:, -lo.shape[1] // 5 :]).all()


def test_nan_samples_and_a_short_ring(make_app):
    app = make_app(Stream("emg", GappySource(n_channels=3, fs=2048.0), window_seconds=1.0))
    assert wait_until(has_samples(app, "emg", 2.5), timeout=10)
    viewer = SignalViewer("emg", seconds=5.0)
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx, 3)
    lo, _ = viewer.columns()
    assert np.isfinite(lo[0, -100:]).all()  # scattered NaN are skipped
    assert np.isnan(lo[:, : lo.shape[1] // 2]).all()  # older than the 2 s the ring keeps
    # Built from the 2 s ring, then growing with each frame's new samples.
    assert 2.0 <= viewer.last.seconds_shown < 2.5
    assert "the stream keeps 2 s" in viewer.status


def test_messages_for_unknown_or_unconnected_streams(make_app):
    app = make_app(Stream("emg", SyntheticSource(n_channels=2)), start=False)
    viewer = SignalViewer("emg")
    other = SignalViewer("eeg")
    with ImguiFrames() as frames, frames.frame():
        viewer.ui(app.ctx)
        other.ui(app.ctx)
        app.ctx.class_names.append("Point")  # class lists may change between frames
    assert viewer.status == "waiting for emg..."
    assert other.status == "no stream named 'eeg' (streams: emg)"
    with pytest.raises(ValueError, match="seconds must be > 0"):
        SignalViewer("emg", seconds=0)


def test_function_form_keeps_one_viewer_per_place(make_app):
    app = make_app(Stream("emg", SyntheticSource(n_channels=2, fs=500.0), window_seconds=1))
    assert wait_until(has_samples(app, "emg", 0.2), timeout=10)
    seen = []
    with ImguiFrames() as frames:
        for _ in range(2):
            with frames.frame():
                seen.append(signal_viewer(app.ctx, "emg", seconds=1.0))
                imgui.push_id("other")
                seen.append(signal_viewer(app.ctx, "emg", seconds=2.0))
                imgui.pop_id()
    assert seen[0] is seen[2]
    assert seen[1] is seen[3]
    assert seen[0] is not seen[1]
    assert (seen[0].seconds, seen[1].seconds) == (1.0, 2.0)


def test_a_bigger_plot_gets_a_bigger_texture(make_app):
    app = make_app(Stream("emg", SyntheticSource(n_channels=2, fs=500.0), window_seconds=1))
    assert wait_until(has_samples(app, "emg", 0.2), timeout=10)
    viewer = SignalViewer("emg", seconds=1.0)
    with ImguiFrames(size=(600, 400)) as frames:
        draw(frames, viewer, app.ctx)
        small = viewer._texture.height
        frames.size = (1400, 1000)
        imgui.get_io().display_size = imgui.ImVec2(1400, 1000)
        draw(frames, viewer, app.ctx)
        assert viewer._texture.height > small
        assert viewer.last.repainted
        assert viewer.columns()[0].shape[1] > 1000
        draw(frames, viewer, app.ctx)  # the old texture, never created here, is let go
        assert frames.vertex_count > 0


@pytest.mark.gui
def test_clicking_the_notch_toggle_in_a_window(display, make_app):
    app = make_app(Stream("emg", SyntheticSource(n_channels=8, fs=2048.0), window_seconds=2.5))
    assert wait_until(has_samples(app, "emg", 0.5), timeout=10)
    viewers = []

    def gui():
        viewers.append(signal_viewer(app.ctx, "emg"))

    def script(ctx):
        ctx.sleep_no_skip(0.2, 0.05)
        assert viewers[-1].notch is False
        ctx.item_click("**/###notch_emg")
        ctx.sleep_no_skip(0.2, 0.05)

    run_gui(gui, GuiScript(script, window_size=(900, 600)))
    viewer = viewers[-1]
    assert all(v is viewer for v in viewers)
    assert viewer.notch is True
    assert viewer.last.notch_hz == 50.0


# -- regressions of the review: seconds, gaps, timestamps, Nyquist, textures -------------------
class QueueSource(Source):
    """Hands the stream exactly the chunks (data and timestamps) a test queues."""

    def __init__(self, n_channels, fs, dtype="float32"):
        self.info = StreamInfo(n_channels, fs, np.dtype(dtype))
        self.chunks = queue.Queue()

    def connect(self):
        return self.info

    def read(self):
        try:
            return self.chunks.get(timeout=self.poll_interval)
        except queue.Empty:
            return None


def push(app, source, data, ts):
    """Queue one chunk and wait until the stream's ring holds it."""
    stream = app.ctx.streams["emg"]
    n = stream.n_samples
    source.chunks.put((np.asarray(data, dtype=source.info.dtype), np.asarray(ts, dtype=float)))
    assert wait_until(lambda: stream.n_samples == n + len(ts), timeout=5)


def brute_columns(history, viewer):
    """The viewer's columns decimated from every sample pushed, by a loop over columns."""
    live = viewer._live
    w, n_view = live.n_columns, live.n_view
    lo = np.full((history.shape[1], w), np.nan, dtype=np.float32)
    hi = lo.copy()
    for i, g in enumerate(range(live.g_end - w, live.g_end)):
        a, b = -((-g * n_view) // w), -((-(g + 1) * n_view) // w)
        a = max(0, a - 1 if a == b else a)
        if b > 0:
            lo[:, i], hi[:, i] = history[a:b].min(axis=0), history[a:b].max(axis=0)
    return lo, hi


def test_first_frame_memory_is_bounded_by_the_ring_not_by_seconds(make_app):
    source = QueueSource(16, 2048.0)
    app = make_app(Stream("emg", source, window_seconds=1.0))  # the ring keeps 2 s
    assert app.wait_connected(10) == []
    n = 3 * 2048
    push(app, source, np.random.default_rng(0).standard_normal((n, 16)), np.arange(n) / 2048)
    peaks = {}
    with ImguiFrames() as frames:
        for seconds in (5.0, 300.0, 3000.0):
            viewer = SignalViewer("emg", seconds=seconds)
            tracemalloc.start()
            draw(frames, viewer, app.ctx)
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert viewer.last.columns_updated is None
            assert viewer.last.seconds_shown == pytest.approx(2.0)
    # Before the fix: ~40 MB at 300 s, ~400 MB at 3000 s (growing with seconds).
    assert max(peaks.values()) < 8e6
    assert peaks[3000.0] < 1.5 * peaks[5.0] + 1e6


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, "5"])
def test_seconds_must_be_finite_and_positive(bad, make_app):
    with pytest.raises(ValueError, match="seconds must be > 0 and finite"):
        SignalViewer("emg", seconds=bad)
    app = make_app(Stream("emg", SyntheticSource(n_channels=2, fs=500.0), window_seconds=1))
    assert wait_until(has_samples(app, "emg", 0.2), timeout=10)
    viewer = SignalViewer("emg", seconds=1.0)
    with pytest.raises(ValueError, match="got"):
        viewer.seconds = bad
    assert viewer.seconds == 1.0
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx)  # the bad value never reached a frame
        assert viewer.last is not None
        with frames.frame():
            with pytest.raises(ValueError, match="seconds must be > 0 and finite"):
                signal_viewer(app.ctx, "emg", seconds=bad)
            imgui.push_id("fine")
            assert signal_viewer(app.ctx, "emg", seconds=2.0).seconds == 2.0
            imgui.pop_id()


def test_labels_are_placed_at_their_sample_after_a_gap(tmp_path, make_app):
    fs = 1000.0
    source = QueueSource(1, fs)
    app = make_app(Stream("emg", source, window_seconds=5.0), class_names=("Rest", "Fist"))
    assert app.wait_connected(10) == []
    session = app.start_recording(tmp_path)
    push(app, source, np.zeros((2000, 1)), 100.0 + np.arange(2000) / fs)  # samples 0..1999
    session.add_label(1, 101.0)  # sample 1000
    push(app, source, np.zeros((1000, 1)), 103.0 + np.arange(1000) / fs)  # after a 1 s gap
    push(app, source, np.full((10, 1), 5.0), 104.0 + np.arange(10) / fs)  # a step at 3000
    session.add_label(0, 102.5)  # in the gap: at its edge, sample 2000
    session.add_label(0, 99.0)  # before the first sample: not shown
    viewer = SignalViewer("emg", seconds=4.0)
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx)
    lo, hi = viewer.columns()
    w = lo.shape[1]
    step_x = -4.0 + (np.argmax(hi[0] > 1) + 0.5) * 4.0 / w  # where the step at 3000 is drawn
    labels = viewer.last.labels
    assert [name for _, name in labels] == ["Fist", "Rest"]
    (x_label, _), (x_gap, _) = labels
    pixel = 4.0 / w
    assert x_label == pytest.approx(step_x - 2.0, abs=pixel)  # 2000 samples before the step
    assert x_gap == pytest.approx(step_x - 1.0, abs=pixel)  # and the gap's edge, 1000 before
    # Before the fix the label went by time since the newest sample: 1 s (the gap) too early.


@pytest.mark.parametrize("kind", ["repeated", "backwards", "jitter", "nan"])
def test_new_samples_are_counted_not_found_by_timestamp(kind, make_app):
    fs, n_channels = 2048.0, 4
    source = QueueSource(n_channels, fs)
    app = make_app(Stream("emg", source, window_seconds=2.0))
    assert app.wait_connected(10) == []
    rng = np.random.default_rng(1)
    viewer, chunks, done = SignalViewer("emg", seconds=1.0), [], 0
    with ImguiFrames() as frames:
        for k in range(60):
            n = int(rng.integers(1, 90))
            t = 100.0 + (done + np.arange(n)) / fs
            ts = {
                "repeated": np.full(n, 100.0 + (k // 2)),
                "backwards": t - (50.0 if k >= 20 else 0.0),
                "jitter": t + rng.normal(0, 2 / fs, n),
                "nan": np.full(n, np.nan),
            }[kind]
            chunks.append(rng.standard_normal((n, n_channels)).astype(np.float32))
            push(app, source, chunks[-1], ts)
            done += n
            draw(frames, viewer, app.ctx)
            assert (viewer.last.columns_updated is None) == (k == 0)  # continued, never rebuilt
    assert viewer._live.end == done
    lo, hi = viewer.columns()
    ref_lo, ref_hi = brute_columns(np.concatenate(chunks), viewer)
    np.testing.assert_array_equal(lo, ref_lo)
    np.testing.assert_array_equal(hi, ref_hi)


def test_notch_at_or_above_nyquist_is_reported_off(make_app):
    app = make_app(Stream("emg", SyntheticSource(n_channels=2, fs=80.0), window_seconds=2))
    assert wait_until(has_samples(app, "emg", 0.5), timeout=10)
    viewer = SignalViewer("emg", seconds=1.0, notch=True)
    with ImguiFrames() as frames:
        draw(frames, viewer, app.ctx)
    assert viewer.last.notch_hz is None
    assert "50 Hz notch" not in viewer.status
    assert "no notch: 50 Hz is at or above Nyquist (40 Hz)" in viewer.status


def test_closing_the_run_lets_go_of_the_texture(make_app):
    app = make_app(Stream("emg", SyntheticSource(n_channels=2, fs=500.0), window_seconds=1))
    assert wait_until(has_samples(app, "emg", 0.2), timeout=10)
    viewers = [SignalViewer("emg", seconds=1.0), SignalViewer("emg", seconds=2.0)]
    with ImguiFrames() as frames:
        for _ in range(3):
            with frames.frame():
                for i, viewer in enumerate(viewers):
                    imgui.push_id(str(i))
                    viewer.ui(app.ctx)
                    imgui.pop_id()
        context = imgui.get_current_context()
        assert id(context) in _texture._TEXTURES
    hooks = [h for h in app.ctx.close_hooks if getattr(h, "__self__", None) in viewers]
    assert len(hooks) == 2  # once per viewer, however many frames
    for hook in hooks:  # as App.run does once the window (and its context) is gone
        hook()
    assert id(context) not in _texture._TEXTURES
    assert all(v._texture._tex is None for v in viewers)
    app.ctx.close_hooks.clear()  # as App does after calling them
    # A new run (a new imgui context) draws again with a fresh texture.
    with ImguiFrames() as frames:
        draw(frames, viewers[0], app.ctx, n=2)
        assert viewers[0].last.repainted or viewers[0].last.columns_updated is not None
        assert frames.vertex_count > 0
    assert len([h for h in app.ctx.close_hooks if getattr(h, "__self__", None) is viewers[0]]) == 1
