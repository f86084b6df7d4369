"""RecordingControls in a real imgui context and a real App recording a synthetic source."""

from __future__ import annotations

import itertools
import threading

import pytest
from imgui_bundle import imgui

from labsession import App, Stream
from labsession.core.clock import local_clock
from labsession.recording import open_session_store
from labsession.sources import SyntheticSource
from labsession.testing import GuiScript, ImguiFrames, wait_until
from labsession.widgets import RecordingControls, SessionManager, recording_controls
from labsession.widgets._recording_controls import cue_class

CLASSES = ["Rest", "Fist", "Open"]


@pytest.fixture
def app(tmp_path):
    app = App("controls-test", class_names=CLASSES)
    app.streams(Stream("emg", SyntheticSource(4, 500.0, classes=CLASSES)))
    app.start()
    assert app.wait_connected(10) == []
    yield app
    if app.ctx.state == "recording":
        app.stop_recording()
    app.wait_idle(30)
    for stream in app.ctx.streams.values():
        stream.stop()


def _controls(app, tmp_path, gestures=None):
    return RecordingControls(
        CLASSES,
        on_record=lambda: app.start_recording(tmp_path / "sessions"),
        on_stop=app.stop_recording,
        on_gesture=None if gestures is None else gestures.append,
    )


def _labels(path):
    with open_session_store(path) as store:
        return store.label_track


def test_cue_class_cycles_rest_and_each_class():
    assert [cue_class(k, 3) for k in range(9)] == [0, 1, 0, 2, 0, 1, 0, 2, 0]
    assert [cue_class(k, 2) for k in range(4)] == [0, 1, 0, 1]


def test_record_label_stop_in_frames(app, tmp_path):
    gestures = []
    controls = _controls(app, tmp_path, gestures)
    with ImguiFrames() as frames:
        frames.draw(lambda: controls.ui(app.ctx), frames=2)
        assert controls.state == "idle"
        controls.label(app.ctx, 2)  # idle: picks the class Record stamps first
        assert controls.active_class == 2
        assert gestures == []
        before = local_clock()
        assert controls.record(app.ctx)
        assert controls.recording  # at once, before the session exists
        controls.label(app.ctx, 1)  # queued behind the start
        assert controls.wait(20)
        frames.draw(lambda: controls.ui(app.ctx), frames=3)
        assert controls.state == "recording"
        assert app.ctx.state == "recording"
        assert frames.vertex_count > 0
        assert not controls.record(app.ctx)  # second Record: a no-op, said in the status
        assert "already recording" in app.ctx.status_message
        assert wait_until(lambda: app.ctx.streams["emg"].health.snapshot().n_samples > 500)
        assert controls.stop(app.ctx)
        assert controls.wait(20)
        frames.draw(lambda: controls.ui(app.ctx), frames=2)
        assert controls.state == "idle"
        assert app.ctx.state == "idle"
        assert not controls.stop(app.ctx)
        assert "not recording" in app.ctx.status_message
    app.wait_idle(30)
    (zip_path,) = app.ctx.packed
    labels = _labels(zip_path)
    assert [e.class_index for e in labels] == [2, 1]
    assert before <= labels[0].timestamp <= labels[1].timestamp <= local_clock()
    assert gestures == [2, 1]


def test_failed_record_returns_to_idle_with_message(app, tmp_path):
    def broken():
        raise OSError("disk unplugged")

    controls = RecordingControls(CLASSES, on_record=broken, on_stop=app.stop_recording)
    with ImguiFrames() as frames:
        controls.record(app.ctx)
        controls.wait(10)
        frames.draw(lambda: controls.ui(app.ctx), frames=2)
    assert controls.state == "idle"
    assert "Record failed" in app.ctx.status_message
    assert "disk unplugged" in app.ctx.status_message


def test_cue_mode_labels_each_cue_at_its_time(app, tmp_path):
    controls = _controls(app, tmp_path)
    controls.cue_mode = True
    controls.cue_seconds = 0.3
    with ImguiFrames() as frames:
        controls.record(app.ctx)
        assert controls.wait(20)
        start = local_clock()
        assert wait_until(
            lambda: (frames.draw(lambda: controls.ui(app.ctx)), controls._cue_step)[1] >= 4, 20
        )
        controls.stop(app.ctx)
        assert controls.wait(20)
    app.wait_idle(30)
    labels = _labels(app.ctx.packed[-1])
    classes = [e.class_index for e in labels]
    assert classes[:5] == [0, 1, 0, 2, 0]
    steps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(labels)]
    assert steps[1:4] == pytest.approx([0.3, 0.3, 0.3], abs=1e-6)  # scheduled, not frame, times
    assert labels[0].timestamp <= start


def test_function_form_keeps_one_instance_and_follows_class_list(app, tmp_path):
    seen = []
    record, stop = (lambda: None), (lambda: None)
    with ImguiFrames() as frames:
        for names in (CLASSES, [*CLASSES, "Pinch"]):
            frames.draw(lambda n=names: seen.append(recording_controls(app.ctx, n, record, stop)))
    assert seen[0] is seen[1]
    assert seen[1].class_names == [*CLASSES, "Pinch"]


def test_recording_started_elsewhere_is_followed(app, tmp_path):
    controls = _controls(app, tmp_path)
    with ImguiFrames() as frames:
        app.start_recording(tmp_path / "sessions")
        frames.draw(lambda: controls.ui(app.ctx))
        assert controls.state == "recording"
        app.stop_recording()
        frames.draw(lambda: controls.ui(app.ctx))
        assert controls.state == "idle"


def test_a_new_imgui_context_gets_new_widget_instances(app):
    record, stop = (lambda: None), (lambda: None)
    seen = []
    for _ in range(2):  # the second context is likely created where the first one lived
        with ImguiFrames() as frames:
            frames.draw(lambda: seen.append(recording_controls(app.ctx, CLASSES, record, stop)), 3)
    assert seen[0] is seen[2]
    assert seen[3] is not seen[2]


@pytest.mark.gui
def test_a_record_click_still_starting_when_the_window_closes_is_saved(tmp_path, display):
    app = App("close-while-starting", class_names=CLASSES)
    app.streams(Stream("emg", SyntheticSource(2, 500.0, classes=CLASSES)))
    slow_disk = threading.Event()

    def start():
        slow_disk.wait(1.0)  # the session folder takes a while to create
        app.start_recording(tmp_path / "sessions")

    @app.ui
    def ui(ctx):
        recording_controls(ctx, CLASSES, on_record=start, on_stop=app.stop_recording)

    def script(ctx):
        ctx.item_click("**/###record")
        ctx.key_press(imgui.Key._2)  # a label queued behind the start

    gui = GuiScript(script)
    app.run(runner_params=gui.runner_params)  # the window closes at once
    gui.check()
    assert app.ctx.state == "idle"
    assert app.ctx.session is None
    (zip_path,) = app.ctx.packed
    assert [e.class_index for e in _labels(zip_path)] == [1]
    assert not [p for p in (tmp_path / "sessions").iterdir() if p.is_dir()]


def test_a_plain_string_of_class_names_is_refused():
    # "Rest,Fist" showed nine buttons, one per letter.
    with pytest.raises(ValueError, match=r"got the string 'Rest,Fist': give a list, e\.g\."):
        RecordingControls("Rest,Fist", on_record=lambda: None, on_stop=lambda: None)
    with pytest.raises(ValueError, match="class_names must be a list of names"):
        SessionManager(class_names="Rest,Fist")
