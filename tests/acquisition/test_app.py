import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from labsession import App, Stream
from labsession.acquisition._health import StreamHealth
from labsession.core.clock import local_clock
from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo, open_session_store
from labsession.sources import LSLSource, Source, SyntheticSource
from labsession.testing import wait_until


def test_recording_lifecycle_skips_unconnected_and_loses_nothing(tmp_path, caplog):
    synth = SyntheticSource(4, 500.0, classes=["Rest", "Fist"])
    app = App("life", class_names=["Rest", "Fist"])
    app.streams(
        Stream("emg", synth, window_seconds=0.5),
        Stream("absent", LSLSource("no-such-lsl-stream", timeout=0.1), connect_retry=0.2),
    )
    app.start()
    assert app.wait_connected(2) == ["absent"]
    assert app.ctx.streams["absent"].info is None
    session = app.start_recording(tmp_path)
    assert app.ctx.state == "recording"
    assert app.ctx.session is session
    assert any("absent" in r.getMessage() for r in caplog.records)
    assert app.ctx.status_message.startswith("recording without absent: not connected yet")
    app.add_label(0)
    assert wait_until(lambda: app.ctx.streams["emg"].n_samples > 300)
    synth.set_class(1)
    app.add_label(1)
    window, ts = app.ctx.streams["emg"].get_window()
    assert window.shape == (4, 250)
    assert np.all(np.diff(ts) > 0)
    app.stop_recording()
    recorded_while_attached = app.ctx.streams["emg"].n_samples
    assert app.ctx.state == "idle"
    assert app.ctx.session is None
    app.wait_idle()
    for stream in app.ctx.streams.values():
        stream.stop()
    (zip_path,) = app.ctx.packed
    with open_session_store(zip_path) as store:
        assert store.stream_names == ["emg"]
        assert store.class_names == ["Rest", "Fist"]
        assert store.app_name == "life"
        _, ts = store.get_continuous("emg")
        assert [e.class_index for e in store.label_track] == [0, 1]
    # Contiguous: not one sample missing between first and last, and nothing after stop.
    np.testing.assert_allclose(np.diff(ts), 1 / 500.0, atol=1e-9)
    assert len(ts) <= recorded_while_attached


def test_record_with_no_stream_connected_is_refused_before_any_folder(tmp_path):
    # The take was packed as a verified zip holding no stream while the window counted samples.
    app = App("late", class_names=["Rest", "Fist"], base_path=tmp_path)
    app.streams(Stream("absent", LSLSource("no-such-lsl-stream", timeout=0.1), connect_retry=0.2))
    app.start()
    try:
        assert app.wait_connected(1) == ["absent"]
        with pytest.raises(SessionError, match=r"no stream has connected yet \(absent\)"):
            app.start_recording()
        assert app.ctx.state == "idle"
        assert list(tmp_path.iterdir()) == []
    finally:
        for stream in app.ctx.streams.values():
            stream.stop()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_names": "Rest,Fist"}, "class_names must be a list of strings, got the string"),
        ({"class_names": range(3)}, r"class_names\[0\] must be a string, got 0"),
        ({"name": 5}, "app_name must be"),
    ],
)
def test_what_no_session_could_hold_is_refused_when_the_app_is_made(tmp_path, kwargs, message):
    # "Rest,Fist" was nine classes of one letter each, found out at the first recording.
    arguments = {"name": "demo", "base_path": tmp_path, **kwargs}
    with pytest.raises(SessionError, match=message):
        App(**arguments)
    assert list(tmp_path.iterdir()) == []


def test_cannot_label_when_idle(tmp_path):
    app = App("idle label")
    app.streams(Stream("emg", SyntheticSource(2, 100.0)))
    app.start()
    try:
        app.wait_connected(2)
        with pytest.raises(RuntimeError, match="not recording"):
            app.add_label(0)
    finally:
        app.ctx.streams["emg"].stop()


def test_headless_run_hooks_and_duration(tmp_path):
    app = App("headless")
    app.streams(Stream("emg", SyntheticSource(2, 200.0)))
    calls = []
    app.before_run_hooks.append(lambda a: calls.append(a.start_recording(tmp_path)))
    started = time.monotonic()
    app.run(mode="headless", duration=0.5)
    assert 0.5 <= time.monotonic() - started < 10
    assert len(calls) == 1
    assert app.ctx.state == "idle"
    (zip_path,) = app.ctx.packed
    assert zip_path.exists()
    with pytest.raises(ValueError, match="'gui' or 'headless'"):
        app.run(mode="web")


def _start_record(tmp_path, cycle="5"):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labsession.cli",
            "record",
            "--cycle",
            cycle,
            "--repeats",
            "2",
            "--out",
            str(tmp_path),
            "--fs",
            "1000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "cue: Fist" in line:
            break
    return proc, lines


@pytest.mark.slow
def test_sigterm_stops_saves_and_packs(tmp_path):
    proc, _ = _start_record(tmp_path)
    time.sleep(1.0)  # record some of the "Fist" cue
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopped after" in rest
    (zip_path,) = tmp_path.glob("*.session.zip")
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
    with open_session_store(zip_path) as store:
        assert [e.class_index for e in store.label_track] == [0, 1]
        assert store.n_samples("emg") > 5000


@pytest.mark.slow
def test_sigkill_during_recording_leaves_a_session_attach_can_finish(tmp_path):
    proc, _ = _start_record(tmp_path)
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    with open_session_store(folder) as store:
        assert [e.class_index for e in store.label_track] == [0, 1]
        n = store.n_samples("emg")
        assert n >= 5000  # 6.5 s recorded: at most the last second (+ a write) lost
    zip_path = Session.attach(folder).pack_to_zip()
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") == n
        assert store.class_names == ["Rest", "Fist", "Open"]


@pytest.mark.slow
def test_headless_app_run_saves_and_packs_on_sigterm(tmp_path):
    script = (
        "import sys\n"
        "from labsession import App, Stream\n"
        "from labsession.sources import SyntheticSource\n"
        "app = App('sigterm', class_names=['Rest'])\n"
        "app.streams(Stream('emg', SyntheticSource(2, 500.0, classes=['Rest', 'A'])))\n"
        "def begin(a):\n"
        "    a.start_recording(sys.argv[1])\n"
        "    a.add_label(0)\n"
        "    print('recording', flush=True)\n"
        "app.before_run_hooks.append(begin)\n"
        "app.run(mode='headless')\n"
        "print('packed', app.ctx.packed[-1], flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "recording"
    assert wait_until(lambda: any(tmp_path.glob("*/emg.zarr/c")), timeout=20)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    zip_path = out.split()[-1]
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") >= 500
        assert [e.class_index for e in store.label_track] == [0]


@pytest.fixture
def ctrl_c_as_in_a_terminal():
    """Python's own SIGINT handler, as in a terminal, whatever the suite was started from (a
    background job inherits SIGINT ignored, and the App restores what it found)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_the_packing_does_not_cut_it_short(tmp_path, ctrl_c_as_in_a_terminal):
    app = App("interrupted twice")
    app.streams(Stream("emg", SyntheticSource(2, 200.0)))
    app.before_run_hooks.append(lambda a: a.start_recording(tmp_path))
    app.before_run_hooks.append(lambda a: a.request_stop())  # as a first Ctrl-C would
    app.ctx.close_hooks.append(lambda: os.kill(os.getpid(), signal.SIGINT))  # a second one
    app.run(mode="headless", duration=30)
    (zip_path,) = app.ctx.packed
    assert zip_path.is_file()
    assert not app.ctx.streams["emg"]._thread.is_alive()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class NeverConnects(SyntheticSource):
    def connect(self):
        raise ConnectionError("amplifier switched off")


def test_ctrl_c_while_waiting_for_a_device_stops_at_once(tmp_path):
    app = App("waiting")
    stream = Stream("emg", NeverConnects(2, 200.0), connect_retry=0.05)
    app.streams(stream)
    hooks = []
    app.before_run_hooks.append(hooks.append)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    app.run(mode="headless", connect_timeout=60)
    assert time.monotonic() - started < 10
    assert hooks == []
    assert not stream._thread.is_alive()


class Resizable(Source):
    """Zeros, paced from the clock, in as many channels as the device is set to."""

    def __init__(self, n_channels):
        self.n_channels = n_channels

    def connect(self):
        self.t0, self.sent = local_clock(), 0
        return StreamInfo(self.n_channels, 200.0)

    def read(self):
        time.sleep(0.01)
        due = int((local_clock() - self.t0) * 200.0) - self.sent
        if due <= 0:
            return None
        ts = self.t0 + (self.sent + np.arange(due)) / 200.0
        self.sent += due
        return np.zeros((due, self.n_channels), np.float32), ts


def test_a_restarted_stream_connects_again_with_the_new_layout():
    source = Resizable(4)
    stream = Stream("emg", source)
    stream.start()
    assert stream.wait_connected(10)
    stream.stop()
    source.n_channels = 6  # the device comes back with another layout
    stream.start()
    try:
        assert stream.wait_connected(10)
        assert stream.info.n_channels == 6
        assert wait_until(lambda: stream.ring.n_written > 0)
        assert stream.get_window(0.01)[0].shape[0] == 6
    finally:
        stream.stop()


class Flaky(Resizable):
    """Paced zeros; every 4th read fails, and the device is unplugged now and then."""

    def __init__(self):
        super().__init__(2)
        self.calls = 0
        self.state = "connected"

    def read(self):
        self.calls += 1
        if self.calls % 4 == 0:
            raise OSError("USB transfer failed")
        if self.calls % 30 in (1, 2, 3):
            self.state = "disconnected"
            time.sleep(0.01)
            return None
        self.state = "connected"
        return super().read()


def test_source_errors_and_disconnects_are_noted_in_the_recording(tmp_path):
    stream = Stream("emg", Flaky())
    stream.start()
    try:
        assert stream.wait_connected(10)
        session = Session(tmp_path)
        session.init_stream("emg", stream.info)
        errors_before = stream.health.snapshot().n_source_errors
        attached = local_clock()
        stream.attach_session(session)
        meta_file = session.path / "meta.json"

        def noted():  # by the writer thread, while recording: a crash keeps them
            entry = json.loads(meta_file.read_text()).get("integrity", {}).get("emg")
            return bool(entry and entry["n_source_errors"] and entry["n_disconnects"])

        assert wait_until(noted, timeout=30)
        stream.detach_session()
        detached = local_clock()
        errors_after = stream.health.snapshot().n_source_errors
        session.close()
    finally:
        stream.stop()
    record = session.integrity("emg")
    assert {message for _, message in record.source_errors} == {"OSError: USB transfer failed"}
    assert 0 < record.n_source_errors <= errors_after - errors_before
    assert record.n_disconnects >= 1
    times = [t for t, _ in record.source_errors] + [t for d in record.disconnects for t in d]
    assert all(attached <= t <= detached for t in times if t is not None)
    with open_session_store(session.path) as store:
        assert store.n_samples("emg") > 0
        assert store.integrity("emg") == record


def test_a_failing_disk_puts_the_app_in_error_and_acquisition_goes_on(tmp_path):
    app = App("failing", class_names=["Rest", "Fist"])
    stream = Stream("emg", SyntheticSource(2, 500.0, classes=["Rest", "Fist"]), window_seconds=0.5)
    app.streams(stream)
    app.start()
    try:
        assert app.wait_connected(10) == []
        session = app.start_recording(tmp_path)
        app.add_label(0)
        assert wait_until(lambda: session.flush() is None and session.n_samples("emg") >= 500)
        # The drive under the arrays goes away: the next chunk write fails.
        chunks = session.path / "emg.zarr" / "c"
        chunks.rename(session.path / "chunks-aside")
        chunks.write_text("not a folder")
        assert wait_until(lambda: app.ctx.state == "error", timeout=20)
        assert "Not a directory" in app.ctx.status_message
        assert str(session.path) in app.ctx.status_message
        n = stream.n_samples
        assert wait_until(lambda: stream.n_samples > n + 500)  # acquisition goes on
        assert stream.append_errors > 0
        assert app.start_recording(tmp_path) is session  # a no-op, said in the status
        assert "state 'error'" in app.ctx.status_message
        assert app.ctx.state == "error"
        assert app.add_label(1).class_index == 1
        assert app.stop_recording() is session
        assert app.ctx.state == "idle"
        assert app.ctx.session is None
        assert "kept unpacked" in app.ctx.status_message
        app.wait_idle()
        assert session.path.is_dir()
        assert not list(tmp_path.glob("*.zip"))
        labels = json.loads((session.path / "labels.json").read_text())
        assert [e["class_index"] for e in labels] == [0, 1]
        (entry,) = json.loads((session.path / "meta.json").read_text())["write_errors"]
        assert entry["lost"]["emg"]["n_samples"] > 500
        n = stream.n_samples
        assert wait_until(lambda: stream.n_samples > n + 100)
    finally:
        for s in app.ctx.streams.values():
            s.stop()


def test_stopping_while_waiting_for_a_device_does_not_wait_for_the_lsl_resolve(tmp_path):
    # Ctrl-C while run waited for a device took ~5 s: the stream's thread sat in one LSL
    # resolve of the source's whole timeout, and stop() joined it.
    app = App("waiting", base_path=tmp_path)
    app.streams(Stream("emg", LSLSource("labsession-test-never-there", timeout=30.0)))
    asked = []

    def stop_soon():
        asked.append(time.monotonic())
        app.request_stop()

    timer = threading.Timer(1.0, stop_soon)
    timer.start()
    try:
        app.run(mode="headless", duration=None, connect_timeout=60)
    finally:
        timer.cancel()
    assert time.monotonic() - asked[0] < 2.0
    assert list(tmp_path.iterdir()) == []


def _disconnects(zip_path, name):
    with open_session_store(zip_path) as store:
        return store.integrity(name).disconnects


def test_a_slow_regular_source_is_not_taken_for_a_silent_one(tmp_path):
    # A sample every 2.5 s, stopped 2.2 s after the last: "disconnected" was noted (a fixed
    # 2 s, whatever the source's rate).
    app = App("slow", base_path=tmp_path)
    app.streams(Stream("slow", SyntheticSource(1, 0.4), window_seconds=10))
    app.start()
    stream = app.ctx.streams["slow"]
    try:
        assert app.wait_connected(5) == []
        app.start_recording()
        assert wait_until(lambda: stream.n_samples >= 2, timeout=15)
        assert wait_until(lambda: (stream.health.last_sample_age() or 0.0) > 2.2, timeout=5)
        app.stop_recording()
        app.wait_idle()
    finally:
        stream.stop()
    assert _disconnects(app.ctx.packed[-1], "slow") == ()


def test_a_recording_started_as_the_source_connects_notes_no_outage(tmp_path, monkeypatch):
    # The stream's info was published before its health said connected: a recording started
    # in between noted a disconnect that nothing ever closed.
    original = StreamHealth.on_connected

    def slowly(self, fs):
        time.sleep(0.3)
        original(self, fs)

    monkeypatch.setattr(StreamHealth, "on_connected", slowly)
    app = App("race", base_path=tmp_path)
    stream = Stream("emg", SyntheticSource(2, 500.0))
    app.streams(stream)
    app.start()
    try:
        assert wait_until(lambda: stream.info is not None, timeout=10)
        app.start_recording()
        assert wait_until(lambda: stream.n_samples > 200)
        app.stop_recording()
        app.wait_idle()
    finally:
        stream.stop()
    assert _disconnects(app.ctx.packed[-1], "emg") == ()


def test_low_space_and_an_unconnected_stream_are_both_said(tmp_path):
    app = App("both", base_path=tmp_path, min_free_minutes=10**9)  # any disk is low for it
    app.streams(
        Stream("emg", SyntheticSource(2, 500.0)),
        Stream("glove", LSLSource("labsession-test-absent", timeout=0.3), connect_retry=0.2),
    )
    app.start()
    try:
        assert app.wait_connected(2) == ["glove"]
        app.start_recording()
        message = app.ctx.status_message
        app.stop_recording()
        app.wait_idle()
    finally:
        for stream in app.ctx.streams.values():
            stream.stop()
    assert message.startswith("low disk space: ")
    assert "; recording without glove: not connected yet" in message
