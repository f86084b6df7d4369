"""The App's lifecycle as MyoGestic users know it: no-op repeats, discard, streams added and
removed at run time, cleanup hooks, float32 windows, and what a failure of the label track does.

Real sources on their acquisition threads, real sessions on disk; every wait polls a deadline.
"""

import json
import shutil
import threading
import time
import zipfile

import numpy as np
import pytest

from labsession import App, Stream
from labsession.core.clock import local_clock
from labsession.recording import StreamInfo, open_session_store
from labsession.sources import Source, SyntheticSource
from labsession.testing import wait_until


class Tracked(SyntheticSource):
    """A synthetic source that counts its ``close`` calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closed = 0

    def close(self):
        self.closed += 1
        super().close()


class BigCounter(Source):
    """int32 samples counting from 2**24 + 1 (not exact in float32), paced from the clock."""

    FIRST = 2**24 + 1

    def connect(self):
        self.t0, self.sent = local_clock(), 0
        return StreamInfo(2, 500.0, "int32")

    def read(self):
        time.sleep(0.005)
        due = int((local_clock() - self.t0) * 500.0) - self.sent
        if due <= 0:
            return None
        index = self.sent + np.arange(due)
        self.sent += due
        values = (self.FIRST + index).astype(np.int32)
        return np.stack([values, -values], axis=1), self.t0 + index / 500.0


@pytest.fixture
def app(tmp_path):
    """A started app recording a synthetic EMG stream into ``tmp_path`` (all stopped after)."""
    app = App("lifecycle", class_names=["Rest", "Fist"], base_path=tmp_path)
    app.streams(Stream("emg", SyntheticSource(2, 500.0, classes=["Rest", "Fist"])))
    app.start()
    assert app.wait_connected(10) == []
    yield app
    if app.ctx.session is not None:
        app.stop_recording(pack=False)
    app.wait_idle(30)
    for stream in app.ctx.streams.values():
        stream.stop()


def _samples_grow(stream, by=100):
    n = stream.n_samples
    return wait_until(lambda: stream.n_samples > n + by)


def test_a_second_start_and_a_stop_while_idle_are_no_ops_said_in_the_status(app, tmp_path):
    assert app.stop_recording() is None
    assert app.ctx.status_message == "not recording: stop_recording ignored"
    assert app.discard_recording() is None
    assert app.ctx.status_message == "not recording: discard_recording ignored"
    session = app.start_recording()
    assert app.start_recording(tmp_path / "elsewhere") is session
    assert "already recording" in app.ctx.status_message
    assert str(session.path) in app.ctx.status_message
    assert app.ctx.state == "recording"
    assert app.ctx.session is session
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [session.path.name]
    assert app.stop_recording() is session
    assert app.stop_recording() is None
    assert "not recording" in app.ctx.status_message
    app.wait_idle(30)
    assert len(app.ctx.packed) == 1


def test_discard_stops_packs_nothing_and_removes_the_folder(app, tmp_path):
    stream = app.ctx.streams["emg"]
    session = app.start_recording()
    app.add_label(1)
    assert wait_until(lambda: session.flush() is None and session.n_samples("emg") >= 250)
    folder = session.path
    assert app.discard_recording() == folder
    assert app.ctx.state == "idle"
    assert app.ctx.session is None
    assert "discarded" in app.ctx.status_message
    assert not folder.exists()
    assert list(tmp_path.iterdir()) == []  # no zip, no lock file, no hidden leftover
    assert app.unfinished_sessions() == []
    app.wait_idle(30)
    assert app.ctx.packed == []
    assert _samples_grow(stream)  # acquisition goes on
    # The next take records and packs as usual.
    app.start_recording()
    app.add_label(0)
    assert _samples_grow(stream)
    app.stop_recording()
    app.wait_idle(30)
    (zip_path,) = app.ctx.packed
    with open_session_store(zip_path) as store:
        assert [e.class_index for e in store.label_track] == [0]
    assert list(tmp_path.iterdir()) == [zip_path]


def test_discard_ends_a_recording_whose_disk_failed(app, tmp_path):
    session = app.start_recording()
    assert wait_until(lambda: session.flush() is None and session.n_samples("emg") >= 500)
    chunks = session.path / "emg.zarr" / "c"
    chunks.rename(session.path / "chunks-aside")
    chunks.write_text("not a folder")
    assert wait_until(lambda: app.ctx.state == "error", timeout=20)
    assert app.discard_recording() == session.path
    assert app.ctx.state == "idle"
    assert list(tmp_path.iterdir()) == []
    assert _samples_grow(app.ctx.streams["emg"])


def test_streams_are_added_and_removed_at_run_time_but_not_while_recording(tmp_path):
    app = App("devices", base_path=tmp_path)
    first = Stream("emg", Tracked(2, 500.0))
    assert app.add_stream(first)  # before the app runs: registered, not started
    assert first._thread is None
    assert not app.add_stream(Stream("emg", SyntheticSource(2, 500.0)))
    assert "name is taken" in app.ctx.status_message
    app.start()
    try:
        assert app.wait_connected(10) == []
        before = app.ctx.streams
        glove_source = Tracked(3, 100.0)
        assert app.add_stream(Stream("glove", glove_source))
        assert list(before) == ["emg"]  # a new dict: one being iterated never changes
        assert list(app.ctx.streams) == ["emg", "glove"]
        glove = app.ctx.streams["glove"]
        assert glove.wait_connected(10)  # started, as the app runs
        assert _samples_grow(glove, by=20)
        session = app.start_recording()
        assert not app.add_stream(Stream("force", SyntheticSource(1, 100.0)))
        assert "while recording" in app.ctx.status_message
        assert not app.remove_stream("glove")
        assert "while recording" in app.ctx.status_message
        assert list(app.ctx.streams) == ["emg", "glove"]
        app.stop_recording()
        assert app.remove_stream("glove")
        assert list(app.ctx.streams) == ["emg"]
        assert not glove._thread.is_alive()
        assert glove_source.closed >= 1
        assert not app.remove_stream("glove")
        assert "there is none" in app.ctx.status_message
        app.wait_idle(30)
        with open_session_store(app.ctx.packed[-1]) as store:
            assert store.stream_names == ["emg", "glove"]
        assert session.path == app.ctx.packed[-1]
    finally:
        for stream in app.ctx.streams.values():
            stream.stop()


def test_cleanup_hooks_run_after_the_pack_and_before_the_streams_stop(tmp_path):
    app = App("cleanup", base_path=tmp_path)
    app.streams(Stream("emg", SyntheticSource(2, 500.0)))
    app.before_run_hooks.append(lambda a: a.start_recording())
    seen = []

    def look(a):
        seen.append((a.ctx.state, len(a.ctx.packed), a.ctx.streams["emg"]._thread.is_alive()))

    def broken(a):
        raise OSError("stimulator unplugged")

    app.cleanup_hooks += [broken, look]
    with pytest.raises(OSError, match="stimulator unplugged"):
        app.run(mode="headless", duration=0.3)
    assert seen == [("idle", 1, True)]  # ran after the broken one, the session packed
    assert not app.ctx.streams["emg"]._thread.is_alive()  # then the streams stopped
    assert app.ctx.packed[0].is_file()

    # A run that fails before its loop calls them too, and they stay for the next run.
    def bad_hook(a):
        raise KeyError("bad hook")

    app.before_run_hooks[:] = [bad_hook]
    app.cleanup_hooks.remove(broken)
    with pytest.raises(KeyError, match="bad hook"):
        app.run(mode="headless", duration=0.3)
    assert len(seen) == 2
    assert not app.ctx.streams["emg"]._thread.is_alive()


def test_an_unknown_mode_raises_before_anything_starts(tmp_path):
    app = App("modes", base_path=tmp_path)
    stream = Stream("emg", SyntheticSource(2, 500.0))
    app.streams(stream)
    calls = []
    app.cleanup_hooks.append(calls.append)
    with pytest.raises(ValueError, match=r"mode must be 'gui' or 'headless', got 'web'"):
        app.run(mode="web")
    assert stream._thread is None
    assert calls == []


def test_get_window_is_float32_unless_the_streams_own_dtype_is_asked():
    stream = Stream("counter", BigCounter(), window_seconds=0.2)
    stream.start()
    try:
        assert stream.wait_connected(10)
        assert wait_until(lambda: stream.n_samples >= 200)
        window, ts = stream.get_window()
        exact, ts_exact = stream.get_window(dtype=None)
        as64, _ = stream.get_window(0.1, dtype=np.float64)
    finally:
        stream.stop()
    assert window.dtype == np.float32
    assert window.shape == (2, 100)
    assert exact.dtype == np.int32
    assert exact.shape == (2, 100)
    assert ts.dtype == ts_exact.dtype == np.float64
    # Consecutive counts: exact in int32 and float64, rounded in float32 (past 2**24).
    np.testing.assert_array_equal(np.diff(exact[0]), 1)
    np.testing.assert_array_equal(exact[1], -exact[0])
    assert exact[0, 0] >= BigCounter.FIRST
    np.testing.assert_array_equal(as64, exact[:, -50:])
    assert np.any(np.diff(window[0]) != 1)
    np.testing.assert_allclose(window, exact.astype(np.float64)[:, -100:], rtol=1e-7)


def _block_labels(session):
    """Put a folder where labels.json goes: rewriting the label track fails, samples don't."""
    labels = session.path / "labels.json"
    labels.unlink()
    labels.mkdir()
    (labels / "blocker").write_text("x")
    return labels


def test_a_failure_of_the_label_track_alone_keeps_recording(app, tmp_path):
    stream = app.ctx.streams["emg"]
    session = app.start_recording()
    app.add_label(0)
    labels = _block_labels(session)
    assert app.add_label(1).class_index == 1  # kept in memory
    assert wait_until(lambda: "labels are kept in memory" in app.ctx.status_message)
    assert "labels.json" in app.ctx.status_message
    assert app.ctx.state == "recording"
    n = session.n_samples("emg")
    assert wait_until(lambda: session.flush() is None and session.n_samples("emg") > n + 250)
    assert stream.append_errors == 0
    assert app.start_recording() is session  # still the recording in progress
    shutil.rmtree(labels)  # space is back: the session writes the track within about 1 s
    assert wait_until(lambda: labels.is_file() and len(json.loads(labels.read_text())) == 2)
    assert app.ctx.state == "recording"
    app.stop_recording()
    app.wait_idle(30)
    (zip_path,) = app.ctx.packed
    with open_session_store(zip_path) as store:
        assert [e.class_index for e in store.label_track] == [0, 1]
        assert store.n_samples("emg") > n + 250
    with zipfile.ZipFile(zip_path) as archive:
        (entry,) = json.loads(archive.read("meta.json"))["write_errors"]  # the fault, noted
    assert "labels.json" in entry["error"]
    assert entry["lost"] == {}


def test_samples_failing_after_a_label_fault_still_turn_the_state_to_error(app, tmp_path):
    session = app.start_recording()
    _block_labels(session)
    app.add_label(1)
    assert wait_until(lambda: "labels are kept in memory" in app.ctx.status_message)
    assert app.ctx.state == "recording"
    chunks = session.path / "emg.zarr" / "c"
    assert wait_until(chunks.is_dir, timeout=20)  # the first chunk is on disk
    chunks.rename(session.path / "chunks-aside")
    chunks.write_text("not a folder")
    assert wait_until(lambda: app.ctx.state == "error", timeout=20)
    assert "recording failed" in app.ctx.status_message
    assert "Not a directory" in app.ctx.status_message
    assert app.stop_recording() is session
    assert app.ctx.state == "idle"
    assert session.path.is_dir()  # kept, unpacked
    app.wait_idle(30)
    assert app.ctx.packed == []


def test_a_stream_reports_a_refused_chunk_once_per_session(tmp_path):
    """``attach_session(on_error=...)``: called on the acquisition thread, once per session."""
    stream = Stream("emg", SyntheticSource(2, 500.0))
    stream.start()
    calls = []
    called = threading.Event()

    def on_error(session, exc):
        calls.append((session, exc))
        called.set()

    try:
        assert stream.wait_connected(10)
        app = App("direct", base_path=tmp_path)
        app.streams(stream)
        session = app.start_recording()
        stream.detach_session()
        stream.attach_session(session, on_error=on_error)
        assert wait_until(lambda: session.flush() is None and session.n_samples("emg") > 100)
        chunks = session.path / "emg.zarr" / "c"
        chunks.rename(session.path / "chunks-aside")
        chunks.write_text("not a folder")
        assert called.wait(20)
        errors = stream.append_errors
        assert wait_until(lambda: stream.append_errors > errors + 5)
        assert len(calls) == 1
        assert calls[0][0] is session
        assert "Not a directory" in str(calls[0][1])
        app.stop_recording()
    finally:
        stream.stop()
