import shutil

import numpy as np
import pytest

from labsession import App, Stream
from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo
from labsession.recording._preflight import (
    check_recording_space,
    data_rate,
    find_unfinished_sessions,
)
from labsession.sources import SyntheticSource


def _session(base, *, close=True, pack=False):
    session = Session(base)
    session.init_stream("emg", StreamInfo(2, 100.0))
    session.append("emg", np.zeros((10, 2), np.float32), np.arange(10) / 100.0)
    if pack:
        session.pack_to_zip()
    elif close:
        session.close()
    return session


def test_data_rate_counts_samples_and_timestamps():
    infos = [StreamInfo(64, 2048.0), StreamInfo(3, 100.0, dtype="int16")]
    assert data_rate(infos) == 2048 * (64 * 4 + 8) + 100 * (3 * 2 + 8)
    assert data_rate([]) == 0


def test_space_is_measured_against_the_rate(tmp_path):
    check = check_recording_space(tmp_path / "new" / "sessions", 2**20)
    assert check.folder.is_dir()  # created, as a session would create it
    free = shutil.disk_usage(tmp_path).free
    assert abs(check.free_bytes - free) < 2**26
    assert check.minutes_of_room == pytest.approx(check.free_bytes / 2**20 / 60)
    assert "MiB/s" in check.message(10)
    assert str(check.folder) in check.message(10)
    assert check_recording_space(tmp_path, 0).minutes_of_room == float("inf")


def test_a_folder_that_cannot_be_made_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SessionError, match="cannot create the sessions folder"):
        check_recording_space(blocker / "sessions", 1.0)
    with pytest.raises(SessionError, match="not a folder"):
        check_recording_space(blocker, 1.0)


def test_unfinished_sessions_are_those_nobody_holds_and_nobody_packed(tmp_path):
    crashed = _session(tmp_path).path  # closed, never packed
    packed = _session(tmp_path, pack=True).path
    live = _session(tmp_path, close=False)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "not-a-session").mkdir()
    try:
        assert packed.is_file()
        assert find_unfinished_sessions(tmp_path) == [crashed]
    finally:
        live.close()
    assert find_unfinished_sessions(tmp_path) == sorted([crashed, live.path])
    assert find_unfinished_sessions(tmp_path / "missing") == []


def _app(tmp_path, **kwargs):
    app = App("preflight", class_names=["a"], base_path=tmp_path / "sessions", **kwargs)
    app.streams(Stream("emg", SyntheticSource(2, 200.0), window_seconds=0.5))
    app.start()
    assert app.wait_connected(10) == []
    return app


def test_low_space_warns_or_refuses_before_anything_is_written(tmp_path, caplog):
    # More minutes than any disk holds at 200 Hz x 2 channels: the check must fire.
    app = _app(tmp_path, min_free_minutes=1e12)
    try:
        session = app.start_recording()
        assert session.path.parent == tmp_path / "sessions"
        assert app.ctx.status_message.startswith("low disk space: ")
        assert "less than the 1e+12 min wanted" in app.ctx.status_message
        assert "low disk space" in caplog.text
        app.stop_recording(pack=False)
    finally:
        app.ctx.streams["emg"].stop()
    strict = _app(tmp_path / "strict", min_free_minutes=1e12, refuse_low_space=True)
    try:
        with pytest.raises(SessionError, match=r"not recording: .* min of recording"):
            strict.start_recording()
        assert strict.ctx.state == "idle"
        assert list((tmp_path / "strict" / "sessions").iterdir()) == []
    finally:
        strict.ctx.streams["emg"].stop()


def test_run_lists_the_unfinished_sessions_it_finds(tmp_path, caplog):
    crashed = _session(tmp_path / "sessions").path
    app = App("preflight", base_path=tmp_path / "sessions")
    assert app.unfinished_sessions() == [crashed]
    app.run(mode="headless", duration=0.05)
    assert f"1 unfinished session(s) in {tmp_path / 'sessions'}: {crashed.name}" in (
        app.ctx.status_message
    )
    assert crashed.name in caplog.text
    Session.attach(crashed).pack_to_zip()
    assert app.unfinished_sessions() == []
