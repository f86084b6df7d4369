"""TargetSource: a target trajectory with its phase per sample, live and recorded by an App."""

import time

import numpy as np
import pytest

from labsession import App, Stream
from labsession.recording import iter_target_windows, open_session_store
from labsession.sources import (
    Hold,
    Ramp,
    Sine,
    SyntheticSource,
    TargetPhase,
    TargetSource,
    source_factories,
)
from labsession.testing import wait_until
from labsession.testing.source_tests import SourceTests


def test_trajectory_values_and_phases():
    source = TargetSource(
        [Ramp(0.0, 2.0, 0.5), Hold(2.0, 0.25), Sine(1.0, 2.0, 0.5, offset=3.0)], fs=100.0
    )
    data = source.samples(0, 125)
    assert data.shape == (125, 2)
    assert data.dtype == np.float32
    t = np.arange(125) / 100
    phase = data[:, 1]
    np.testing.assert_array_equal(phase, np.repeat([0, 1, 2], [50, 25, 50]))
    np.testing.assert_allclose(data[:50, 0], 4 * t[:50], rtol=1e-6)  # 0 to 2 in 0.5 s
    np.testing.assert_array_equal(data[50:75, 0], 2.0)
    np.testing.assert_allclose(data[75:, 0], 3 + np.sin(2 * np.pi * 2 * (t[75:] - 0.75)), 1e-6)
    assert source.info.channel_names == ("target", "phase")
    assert source.info.n_channels == 2
    assert source.lap_samples == 125


def test_loop_repeats_the_protocol_and_its_phase_indices():
    source = TargetSource([Ramp(0, 1, 0.3), Hold(5, 0.2)], fs=100.0)
    first, second = source.samples(0, 50), source.samples(50, 100)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(source.samples(45, 55)[:, 1], [1] * 5 + [0] * 5)
    once = TargetSource([Ramp(0, 1, 0.3), Hold(5, 0.2)], fs=100.0, loop=False)
    np.testing.assert_array_equal(once.samples(0, 50), first)
    assert once.samples(48, 52).tolist() == [[5, 1], [5, 1], [0, -1], [0, -1]]


def test_phase_edges_are_exact_for_durations_floats_cannot_hold():
    """0.1 s then 0.2 s at 1 kHz: 100 and 200 samples (0.1 + 0.2 is 0.30000000000000004)."""
    source = TargetSource([Hold(0, 0.1), Hold(1, 0.2), Hold(2, 0.7)], fs=1000.0)
    counts = np.bincount(source.samples(0, 1000)[:, 1].astype(int))
    assert counts.tolist() == [100, 200, 700]
    # A duration that is not a whole number of samples: the phase has the samples in its span.
    odd = TargetSource([Hold(0, 0.0125), Hold(1, 0.0125)], fs=100.0)
    assert odd.lap_samples == 3  # samples at 0, 0.01 (phase 0), 0.02 (phase 1: 0.0125..0.025)
    assert odd.samples(0, 3)[:, 1].tolist() == [0, 0, 1]


def test_several_values_a_single_one_broadcast():
    source = TargetSource(
        [Ramp([0, 0], [1, -1], 1.0), Hold(0.5, 1.0)], fs=10.0, value_names=["x", "y"]
    )
    assert source.info.channel_names == ("x", "y", "phase")
    data = source.samples(0, 20)
    np.testing.assert_allclose(data[5, :2], [0.5, -0.5])
    np.testing.assert_array_equal(data[15], [0.5, 0.5, 1])


def test_custom_phase_is_a_plug_point():
    class Square(TargetPhase):
        seconds = 0.4

        def values(self, t):
            return np.where((t * 10).astype(int) % 2 == 0, 1.0, -1.0)[:, None]

    data = TargetSource([Square(), Hold(0, 0.1)], fs=10.0).samples(0, 5)
    assert data[:, 0].tolist() == [1, -1, 1, -1, 0]


def test_bad_protocols_are_refused():
    with pytest.raises(ValueError, match="phases is empty"):
        TargetSource([])
    with pytest.raises(TypeError, match=r"phases\[1\] must be a TargetPhase"):
        TargetSource([Hold(0, 1.0), (0, 1.0)])
    with pytest.raises(ValueError, match=r"the phases have \[2, 3\] values"):
        TargetSource([Hold([0, 0], 1.0), Hold([0, 0, 0], 1.0)])
    with pytest.raises(ValueError, match="value_names has 1 names for 2"):
        TargetSource([Hold([0, 0], 1.0)], value_names=["x"])
    with pytest.raises(ValueError, match="seconds must be a finite duration > 0"):
        Ramp(0, 1, 0)
    with pytest.raises(ValueError, match="start must be a finite number"):
        Ramp(float("nan"), 1, 1.0)
    with pytest.raises(ValueError, match="differ in length"):
        Ramp([0, 0], [1, 1, 1], 1.0)
    with pytest.raises(ValueError, match="frequency must be > 0"):
        Sine(1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="fs must be"):
        TargetSource(fs=0)
    with pytest.raises(ValueError, match="idle_value has 3 values for 2"):
        TargetSource([Hold([0, 0], 1.0)], idle_value=[0, 0, 0])


def test_registered_with_a_default_protocol():
    source = source_factories()["target"]()
    assert isinstance(source, TargetSource)
    data = source.samples(0, source.lap_samples)
    assert source.lap_samples == 800  # ramp up, hold, ramp down, rest: 2 s each at 100 Hz
    assert data[:, 0].min() == 0.0
    assert data[:, 0].max() == 1.0
    assert sorted(set(data[:, 1].tolist())) == [0, 1, 2, 3]


def test_paced_by_the_clock_and_current_follows():
    source = TargetSource([Ramp(0, 1, 10.0)], fs=200.0)
    assert source.current is None
    source.connect()
    started = time.monotonic()
    chunks = []
    while time.monotonic() - started < 0.5:
        chunk = source.read()
        if chunk is not None:
            chunks.append(chunk)
    elapsed = time.monotonic() - started
    data = np.concatenate([c[0] for c in chunks])
    ts = np.concatenate([c[1] for c in chunks])
    assert abs(len(ts) - elapsed * 200) < 10
    np.testing.assert_allclose(np.diff(ts), 1 / 200, atol=1e-9)
    assert ts[0] == pytest.approx(source.t0)
    np.testing.assert_array_equal(data, source.samples(0, len(ts)))
    values, phase = source.current
    assert values[0] == data[-1, 0]
    assert phase == 0
    source.close()
    assert source.t0 is None
    with pytest.raises(RuntimeError, match="before connect"):
        source.read()


def _read_until(source, predicate, timeout=10):
    """Chunks read until ``predicate(all data so far)`` holds (polled against a deadline)."""
    chunks = []

    def enough():
        chunk = source.read()
        if chunk is not None:
            chunks.append(chunk)
        return bool(chunks) and predicate(np.concatenate([c[0] for c in chunks]))

    assert wait_until(enough, timeout=timeout, interval=0)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def test_a_protocol_that_does_not_loop_runs_once_then_idles():
    """After the last phase the stream goes on, idle (phase -1, idle_value): no hole."""
    source = TargetSource([Hold(1, 0.05)], fs=100.0, loop=False, idle_value=-2.0)
    source.connect()
    data, ts = _read_until(source, lambda d: len(d) >= 8)
    source.close()
    assert data[:5].tolist() == [[1, 0]] * 5
    assert data[5:].tolist() == [[-2, -1]] * (len(data) - 5)
    assert not source.running
    np.testing.assert_allclose(np.diff(ts), 0.01, atol=1e-9)


def test_start_and_stop_run_the_protocol_within_a_continuous_stream():
    source = TargetSource([Ramp(0, 1, 0.1), Hold(1, 0.1)], fs=200.0, autostart=False)
    source.connect()
    assert not source.running
    idle, _ = _read_until(source, lambda d: len(d) >= 3)
    assert set(idle[:, 1].tolist()) == {-1}
    assert np.all(idle[:, 0] == 0)
    source.start()
    assert source.running
    data, ts = _read_until(source, lambda d: len(d) >= 50)
    # The protocol begins at the first sample read after start(): protocol sample 0 on.
    np.testing.assert_array_equal(data, source.samples(0, len(data)))
    assert source.current[1] == int(data[-1, 1])
    source.stop()
    after, ts_after = _read_until(source, lambda d: len(d) >= 3)
    assert set(after[:, 1].tolist()) == {-1}
    assert ts_after[0] == pytest.approx(ts[-1] + 1 / 200)  # the stream never paused
    source.start()  # restarts from the beginning
    again, _ = _read_until(source, lambda d: len(d) >= 5)
    np.testing.assert_array_equal(again, source.samples(0, len(again)))
    source.close()


class TestTargetConformance(SourceTests):
    @pytest.fixture
    def source(self):
        return TargetSource(fs=250.0)


def test_recorded_by_an_app_next_to_emg_gives_dense_targets(tmp_path):
    """The target stream an App records is the trajectory, and each EMG window gets its value.

    Protocol of 1 s: ramp 0 to 1 (0.25 s), hold 1, ramp 1 to 0, hold 0. A window ending
    ``tau`` s into a lap (away from the phase edges) has the target of the trajectory there.
    """
    target = TargetSource(
        [Ramp(0, 1, 0.25), Hold(1, 0.25), Ramp(1, 0, 0.25), Hold(0, 0.25)], fs=100.0
    )
    app = App("force")
    app.streams(Stream("emg", SyntheticSource(2, 500.0)), Stream("force", target))
    app.start()
    assert app.wait_connected(5) == []
    t0 = target.t0
    app.start_recording(tmp_path)
    assert wait_until(lambda: app.ctx.streams["force"].n_samples > 250, timeout=20)
    app.stop_recording()
    app.wait_idle()
    for stream in app.ctx.streams.values():
        stream.stop()
    (zip_path,) = app.ctx.packed
    with open_session_store(zip_path) as store:
        assert store.stream_info("force").channel_names == ("target", "phase")
        data, ts = store.get_continuous("force")
    first = round((ts[0] - t0) * 100)
    np.testing.assert_array_equal(data, target.samples(first, first + len(ts)))
    np.testing.assert_allclose(ts, t0 + np.arange(first, first + len(ts)) / 100, atol=1e-9)

    it = iter_target_windows(zip_path, "emg", "force", 0.1, 0.02)
    windows = list(it)
    assert len(windows) > 50
    assert it.dropped["gap"] == 0
    checked = 0
    for w in windows:
        assert w.window.shape == (2, 50)
        tau = (w.ts[-1] - t0) % 1.0
        phase = int(tau // 0.25)
        if min(tau % 0.25, 0.25 - tau % 0.25) < 0.011:
            continue  # within a sample of a phase edge: the earlier phase's value is held
        expected = [tau / 0.25, 1.0, 1 - (tau - 0.5) / 0.25, 0.0][phase]
        assert w.phase == phase
        assert w.target[0] == pytest.approx(expected, abs=1e-5)
        checked += 1
    assert checked > 0.8 * len(windows)
