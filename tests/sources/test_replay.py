"""ReplaySource on real session files: pacing against a monotonic clock, stepping, loops, labels,
and the timestamps emitted (the recorded ones by default, as MyoGestic; or on the live clock)."""

import threading
import time

import numpy as np
import pytest

from labsession.core.clock import local_clock
from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo, open_session_store
from labsession.sources import ReplaySource, Source, source_factories
from labsession.testing.source_tests import SourceTests

FIXTURE = "tests/data/myogestic"


@pytest.fixture(params=["folder", "sample.session.zip"])
def recording(request, pytestconfig):
    """MyoGestic's reference session (emg: 8 ch, 1 kHz, 20 s, 9 labels) and its content."""
    path = pytestconfig.rootpath / FIXTURE / request.param
    with open_session_store(path) as store:
        data, ts = store.get_continuous("emg")
        labels = store.label_track
    return path, data, ts, labels


@pytest.fixture
def source_of():
    """Build ReplaySources that are closed after the test."""
    made = []

    def make(*args, **kwargs):
        source = ReplaySource(*args, **kwargs)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def test_is_a_registered_source_with_the_recorded_info(recording, source_of):
    path, _, _, _ = recording
    assert source_factories()["replay"] is ReplaySource
    source = source_of(path, "emg")
    assert isinstance(source, Source)
    info = source.connect()
    assert info == StreamInfo(8, 1000.0, "float32")


def test_manual_steps_emit_exactly_that_many(recording, source_of):
    path, data, ts, _ = recording
    source = source_of(path, "emg", speed=0)
    source.connect()
    assert source.read() is None  # nothing stepped yet
    got, stamps = [], []
    for n in (1, 0, 123, 64, 1000):
        source.step(n)
        chunk = source.read()
        if n == 0:
            assert chunk is None
            continue
        assert chunk[0].shape == (n, 8)
        assert chunk[1].shape == (n,)
        got.append(chunk[0])
        stamps.append(chunk[1])
    total = sum(len(g) for g in got)
    np.testing.assert_array_equal(np.concatenate(got), data[:total])
    # The recorded stamps, as MyoGestic's ReplaySource emits them: the labels line up.
    np.testing.assert_array_equal(np.concatenate(stamps), ts[:total])
    assert source.offset == 0.0
    assert source.n_emitted == total


def test_live_timestamps_put_the_first_sample_at_connect(recording, source_of):
    path, data, ts, labels = recording
    source = source_of(path, "emg", speed=0, timestamps="live", replay_labels=True)
    before = local_clock()
    source.connect()
    after = local_clock()
    assert before - ts[0] - 1e-6 <= source.offset <= after - ts[0] + 1e-6
    source.step(len(ts))
    chunk_data, stamps = source.read()
    np.testing.assert_array_equal(chunk_data, data)
    assert before - 1e-6 <= stamps[0] <= after + 1e-6
    np.testing.assert_allclose(stamps, ts + source.offset, rtol=0, atol=1e-9)
    replayed = source.read_labels()  # shifted like the samples: they still line up
    np.testing.assert_allclose(
        [e.timestamp for e in replayed], [e.timestamp + source.offset for e in labels], atol=1e-9
    )
    source.step(100)  # lap 1 starts one period later
    _, lap1 = source.read()
    np.testing.assert_allclose(lap1, ts[:100] + source.offset + source.period, rtol=0, atol=1e-9)
    assert lap1[0] - stamps[-1] == pytest.approx(1e-3, abs=1e-9)


def test_recorded_timestamps_keep_increasing_over_laps(recording, source_of):
    """Looping with the recorded stamps: lap k adds k periods, never going back (MyoGestic's
    loop starts its stamps over; a live stream's health and ring buffer need them to grow)."""
    path, _, ts, _ = recording
    n = len(ts)
    source = source_of(path, "emg", speed=0)
    source.connect()
    source.step(3 * n)
    _, stamps = source.read()
    assert source.period == pytest.approx(ts[-1] - ts[0] + 1e-3)
    for lap in range(3):
        np.testing.assert_allclose(
            stamps[lap * n : (lap + 1) * n], ts + lap * source.period, rtol=0, atol=1e-9
        )
    assert np.diff(stamps).min() > 0.5e-3


def test_loop_wraps_without_gap_or_duplicate(recording, source_of):
    path, data, ts, _ = recording
    n = len(ts)
    source = source_of(path, "emg", speed=0, loop=True)
    source.connect()
    source.step(n - 10)
    head = source.read()
    source.step(30)
    data_wrap, ts_wrap = source.read()
    np.testing.assert_array_equal(data_wrap[:10], data[-10:])
    np.testing.assert_array_equal(data_wrap[10:], data[:20])
    stamps = np.concatenate([head[1], ts_wrap])
    steps = np.diff(stamps)
    assert steps.min() > 0.5e-3  # no duplicate
    assert steps.max() < 1.5e-3  # no gap
    assert source.period == pytest.approx(ts[-1] - ts[0] + 1e-3)
    np.testing.assert_allclose(ts_wrap[10:], ts[:20] + source.offset + source.period, atol=1e-9)
    # Several laps in one step.
    source.step(2 * n + 5)
    many = source.read()
    assert many[0].shape[0] == 2 * n + 5
    assert np.diff(many[1]).min() > 0.5e-3
    assert np.diff(many[1]).max() < 1.5e-3


def test_without_loop_replay_finishes(recording, source_of):
    path, data, _, _ = recording
    source = source_of(path, "emg", speed=0, loop=False)
    source.poll_interval = 0.001
    source.connect()
    source.step(len(data))
    assert source.n_remaining == 0
    assert source.read()[0].shape == data.shape
    assert source.finished
    assert source.read() is None
    with pytest.raises(ValueError, match="only 0 samples are left"):
        source.step(1)
    # Reconnecting starts again from the first sample.
    source.connect()
    assert not source.finished
    source.step(5)
    np.testing.assert_array_equal(source.read()[0], data[:5])


def test_stream_dtype_and_channels_are_kept(tmp_path, source_of):
    session = Session(tmp_path)
    session.init_stream("force", StreamInfo(3, 250.0, "int16"))
    values = np.arange(3000, dtype=np.int16).reshape(1000, 3)
    session.append("force", values, 50.0 + np.arange(1000) / 250.0)
    zip_path = session.pack_to_zip()
    source = source_of(zip_path, "force", speed=0)
    assert source.connect() == StreamInfo(3, 250.0, "int16")
    source.step(700)
    data, ts = source.read()
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data, values[:700])
    assert ts.dtype == np.float64


def run_paced(source, seconds, rate):
    """Read for ``seconds`` as an acquisition thread does.

    Returns the samples read, the bounds the source's count must lie within (from the clock
    read just before and after ``connect`` and around the last ``read``), and the stamps.
    Bracketing the last read keeps the check exact even when the machine is busy.
    """
    before_connect = time.monotonic()
    source.connect()
    after_connect = time.monotonic()
    deadline = after_connect + seconds
    count, stamps = 0, []
    while True:
        before_read = time.monotonic()
        chunk = source.read()
        after_read = time.monotonic()
        if chunk is not None:
            count += len(chunk[0])
            stamps.append(chunk[1])
        if after_read >= deadline:
            break
    low = (before_read - after_connect) * rate
    high = (after_read - before_connect) * rate + 1  # sample 0 is due at once
    return count, low, high, np.concatenate(stamps)


@pytest.mark.parametrize("speed", [1.0, 0.5, 2.0])
def test_pacing_follows_the_clock_times_speed(pytestconfig, source_of, speed):
    path = pytestconfig.rootpath / FIXTURE / "folder"
    count, low, high, stamps = run_paced(source_of(path, "emg", speed=speed), 1.5, 1000.0 * speed)
    assert low * 0.99 - 1 <= count <= high * 1.01 + 1, (low, count, high)
    assert count > 1000 * speed  # it did run for 1.5 s
    steps = np.diff(stamps)
    assert steps.min() > 0.5e-3  # every sample once, in order, recorded spacing
    assert steps.max() < 1.5e-3


@pytest.mark.slow
def test_pacing_over_30_seconds_within_half_a_percent(pytestconfig, source_of):
    """The acceptance figure: 30 s at speed 1 (the 20 s recording loops once)."""
    path = pytestconfig.rootpath / FIXTURE / "sample.session.zip"
    count, low, high, stamps = run_paced(source_of(path, "emg", speed=1.0), 30.0, 1000.0)
    assert low * 0.995 <= count <= high * 1.005, (low, count, high)
    assert low > 29_000
    assert np.diff(stamps).min() > 0.5e-3
    assert np.diff(stamps).max() < 1.5e-3


def test_read_wakes_on_step_instead_of_sleeping(recording, source_of):
    path, _, _, _ = recording
    source = source_of(path, "emg", speed=0)
    source.poll_interval = 5.0
    source.connect()
    result = {}

    def reader():
        t = time.monotonic()
        result["chunk"] = source.read()
        result["waited"] = time.monotonic() - t

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.05)  # let the reader block (not a synchronisation: it may block later too)
    source.step(10)
    thread.join(timeout=5.0)
    assert not thread.is_alive()
    assert result["chunk"][0].shape == (10, 8)
    assert result["waited"] < 2.0


def test_labels_are_replayed_with_the_samples(recording, source_of):
    path, _, ts, labels = recording
    n = len(ts)
    source = source_of(path, "emg", speed=0, replay_labels=True)
    source.connect()
    first_sample = int(np.searchsorted(ts - ts[0], labels[0].timestamp - ts[0]))
    source.step(first_sample)
    source.read()
    assert source.read_labels() == []
    assert source.current_class is None
    source.step(1)
    source.read()
    first = source.read_labels()
    assert [e.class_index for e in first] == [labels[0].class_index]
    assert first[0].timestamp == labels[0].timestamp  # recorded: exactly the recorded label
    assert source.current_class == labels[0].class_index
    source.step(n - first_sample - 1)
    source.read()
    lap0 = source.read_labels()
    assert source.read_labels() == []  # each label once
    assert [e.class_index for e in [*first, *lap0]] == [e.class_index for e in labels]
    assert [e.timestamp for e in lap0] == [e.timestamp for e in labels[1:]]
    assert source.current_class == labels[-1].class_index
    source.step(n)  # lap 1: the track again, one period later
    source.read()
    lap1 = source.read_labels()
    np.testing.assert_allclose(
        [e.timestamp for e in lap1],
        [e.timestamp + source.period for e in labels],
        atol=1e-9,
    )


def test_without_replay_labels_no_labels(recording, source_of):
    path, _, ts, _ = recording
    source = source_of(path, "emg", speed=0)
    source.connect()
    source.step(len(ts))
    source.read()
    assert source.read_labels() == []
    assert source.current_class is None


def test_replayed_stream_records_back_identical(recording, source_of, tmp_path):
    """Poll the source as an acquisition loop does and record it: the samples come back."""
    path, data, ts, labels = recording
    source = source_of(path, "emg", speed=0, loop=False, replay_labels=True)
    info = source.connect()
    with Session(tmp_path, class_names=["Rest", "Fist", "Open"]) as session:
        session.init_stream("emg", info)
        while not source.finished:
            source.step(min(64, source.n_remaining))
            chunk = source.read()
            session.append("emg", *chunk)
            for event in source.read_labels():
                session.add_label(event.class_index, timestamp=event.timestamp)
        out = session.pack_to_zip()
    with open_session_store(out) as store:
        data2, ts2 = store.get_continuous("emg")
        labels2 = store.label_track
    np.testing.assert_array_equal(data2, data)
    np.testing.assert_array_equal(ts2, ts)  # the recorded stamps: the same session again
    assert labels2 == labels


def test_errors_are_clear(recording, source_of, tmp_path):
    path, _, _, _ = recording
    with pytest.raises(ValueError, match=r"no stream 'eeg' to replay.*'emg'"):
        source_of(path, "eeg").connect()
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(path, "emg", speed=-1)
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(path, "emg", speed=float("nan"))
    with pytest.raises(ValueError, match=r"timestamps must be 'recorded' or 'live', got 'lsl'"):
        ReplaySource(path, "emg", timestamps="lsl")
    with pytest.raises(SessionError, match="no such session"):
        source_of(tmp_path / "missing", "emg").connect()
    source = source_of(path, "emg", speed=1.0)
    with pytest.raises(RuntimeError, match="connect"):
        source.read()
    source.connect()
    with pytest.raises(RuntimeError, match="speed=0"):
        source.step(10)
    manual = source_of(path, "emg", speed=0)
    manual.connect()
    with pytest.raises(ValueError, match="n_samples"):
        manual.step(-1)
    manual.close()
    manual.close()  # idempotent
    with pytest.raises(RuntimeError, match="connect"):
        manual.read()


@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("speed", [0, 1.0])
def test_a_timestamp_that_is_not_finite_is_refused_naming_the_file(tmp_path, source_of, bad, speed):
    """A stamp written by another tool or by hand (its chunk re-encoded: every check passes)
    broke labels (a raw ValueError) and pacing (all-NaN stamps)."""
    import zarr

    with Session(tmp_path, class_names=["Rest", "Fist"]) as session:
        session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
        session.add_label(0, timestamp=0.0)
        session.add_label(1, timestamp=1.0)
        session.append("emg", np.ones((300, 2), np.float32), np.arange(300) / 100)
    stamps = zarr.open_array(str(session.path / "emg_timestamps.zarr"), mode="r+")
    edited = stamps[:]
    edited[150] = bad
    stamps[:] = edited
    source = source_of(session.path, "emg", speed=speed, replay_labels=True)
    with pytest.raises(
        SessionError,
        match=rf"stream 'emg' has timestamp {bad!r} at sample 150 \(1 not finite\)",
    ) as error:
        source.connect()
    assert str(session.path) in str(error.value)


class TestReplayConformance(SourceTests):
    """The behaviour every source shares, on a zip replayed in real time."""

    @pytest.fixture
    def source(self, pytestconfig):
        source = ReplaySource(pytestconfig.rootpath / FIXTURE / "sample.session.zip", "emg")
        yield source
        source.close()
