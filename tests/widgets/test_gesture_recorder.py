"""End to end in a real window: examples/gesture_recorder.py driven by imgui's test engine.

Click Record, class buttons with pauses, Stop; the .session.zip holds those labels at the click
times; tick it in the session manager, train, and see predictions; screenshots are not blank.
Set LABSESSION_DOCS_SCREENSHOT=path to keep the one taken while recording (docs/img/gui.png).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labsession.core.clock import local_clock
from labsession.recording import TrainingData, open_session_store
from labsession.testing import GuiScript, save_screenshot, wait_frames

pytestmark = pytest.mark.gui

EXAMPLE = Path(__file__).parents[2] / "examples" / "gesture_recorder.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("gesture_recorder", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_record_label_pick_train_predict(tmp_path, display):
    base = tmp_path / "sessions"
    app = _load_example().build_app(str(base))
    (pipeline,) = app.pipelines
    clicks: list[tuple[int, float, float]] = []
    shot, recording_shot = tmp_path / "trained.png", tmp_path / "recording.png"
    seen: dict[str, object] = {}

    def script(ctx):
        ctx.item_click("**/###record")
        assert wait_frames(ctx, lambda: app.ctx.state == "recording")
        for class_index in (1, 0, 2, 0, 1, 0):
            ctx.sleep_no_skip(0.5, 0.05)
            before = local_clock()
            ctx.item_click(f"**/###class_{class_index}")
            clicks.append((class_index, before, local_clock()))
            if len(clicks) == 5:
                save_screenshot(ctx, recording_shot)  # label lines in the live plot
        ctx.sleep_no_skip(0.5, 0.05)
        ctx.item_click("**/###stop")
        assert wait_frames(ctx, lambda: bool(app.ctx.packed), 60)
        name = app.ctx.packed[0].name
        assert wait_frames(ctx, lambda: ctx.item_exists(f"**/###session_{name}"), 20)
        ctx.item_click(f"**/###session_{name}")
        ctx.item_click("**/###train")
        assert wait_frames(ctx, lambda: pipeline.model is not None, 60), pipeline.fit_error
        assert wait_frames(ctx, lambda: app.ctx.prediction is not None, 20)
        seen["prediction"] = app.ctx.prediction
        ctx.sleep_no_skip(0.5, 0.05)
        save_screenshot(ctx, shot)

    gui = GuiScript(script, window_size=(1280, 800))
    app.run(runner_params=gui.runner_params)
    gui.check()

    (zip_path,) = app.ctx.packed
    with open_session_store(zip_path) as store:
        labels = store.label_track
        data, ts = store.get_continuous("emg")
    assert [e.class_index for e in labels] == [c for c, _, _ in clicks]
    for event, (_, before, after) in zip(labels, clicks, strict=True):
        assert before <= event.timestamp <= after
    assert ts[0] <= labels[0].timestamp
    assert ts[-1] >= labels[-1].timestamp + 0.25  # Stop came 0.5 s after the last click
    assert np.diff(ts).max() < 2 / 2048  # no sample lost between the clicks
    assert data.shape == (len(ts), 8)

    ticked = pipeline.training_data  # what session_manager returned when Train was clicked
    assert isinstance(ticked, TrainingData)
    assert ticked.paths == [zip_path]
    assert ticked.class_names == ["Rest", "Fist", "Open"]
    x, y, _ = ticked.to_arrays("emg", 0.2, 0.05, features=["rms", "wl", "zc", "ssc"])
    assert pipeline.model.n_features_in_ == x.shape[1]
    assert pipeline.model.score(x, y) > 0.8  # trained on those windows
    assert seen["prediction"] in (0, 1, 2)

    for picture in (recording_shot, shot):
        pixels = np.asarray(Image.open(picture).convert("RGB"), dtype=np.float32)
        assert pixels.shape[:2] == (800, 1280)
        assert pixels.std() > 10  # not a blank frame
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    if target := os.environ.get("LABSESSION_DOCS_SCREENSHOT"):
        shutil.copy(recording_shot, target)


def test_closing_the_recorder_while_recording_saves_the_session(tmp_path, display):
    base = tmp_path / "sessions"
    app = _load_example().build_app(str(base))

    def script(ctx):
        ctx.item_click("**/###record")
        assert wait_frames(ctx, lambda: app.ctx.state == "recording")
        ctx.item_click("**/###class_1")
        ctx.sleep_no_skip(0.3, 0.05)

    gui = GuiScript(script)
    app.run(runner_params=gui.runner_params)  # the script ends: the window closes
    gui.check()
    (zip_path,) = app.ctx.packed
    assert zip_path.exists()
    with open_session_store(zip_path) as store:
        assert [e.class_index for e in store.label_track] == [1]
