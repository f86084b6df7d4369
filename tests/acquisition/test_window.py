"""App.run(mode="gui"): a real window under X (Xvfb + Mesa in CI), driven by imgui's test engine."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from imgui_bundle import imgui

from labsession import App, Stream
from labsession.errors import DisplayError
from labsession.sources import SyntheticSource
from labsession.testing import GuiScript
from labsession.widgets import Grid

pytestmark = pytest.mark.gui


def _app(tmp_path, calls):
    app = App("window test", class_names=["Rest", "Fist"])
    app.streams(Stream("emg", SyntheticSource(2, 500.0)))

    @app.ui
    def ui(ctx):
        calls.append(ctx.state)
        if imgui.button("Record###record"):
            app.start_recording(tmp_path / "sessions")

    return app


def test_same_order_as_headless_then_frames_with_ctx(tmp_path, display, gui_state_dir):
    calls, order = [], []
    app = _app(tmp_path, calls)
    app.before_run_hooks.append(lambda a: order.append(("hook", a.ctx.streams["emg"].connected)))
    script = GuiScript(lambda ctx: ctx.sleep_no_skip(0.2, 0.05))
    extra = []
    script.runner_params.callbacks.post_new_frame = lambda: extra.append(1)
    app.run(runner_params=script.runner_params)
    script.check()
    assert order == [("hook", True)]  # hooks ran once the stream had connected
    assert len(calls) >= 3
    assert set(calls) == {"idle"}
    assert len(extra) >= len(calls)  # the caller's other callbacks are kept


def test_closing_the_window_while_recording_packs_before_run_returns(tmp_path, display):
    calls = []
    app = _app(tmp_path, calls)

    def script(ctx):
        ctx.item_click("**/###record")
        ctx.sleep_no_skip(0.3, 0.05)
        assert app.ctx.state == "recording"

    gui = GuiScript(script)
    app.run(runner_params=gui.runner_params)  # the script ends: the window closes
    gui.check()
    assert app.ctx.state == "idle"
    (zip_path,) = app.ctx.packed
    assert zip_path.is_file()
    assert zip_path.name.endswith(".session.zip")
    assert not (tmp_path / "sessions" / zip_path.name.removesuffix(".session.zip")).exists()


def test_request_stop_and_duration_close_the_window(tmp_path, display):
    app = _app(tmp_path, [])
    app.before_run_hooks.append(lambda a: a.request_stop())
    app.run(duration=30)  # request_stop closes at the first frame, long before 30 s
    assert app.stop_requested
    app = _app(tmp_path, frames := [])
    started = time.monotonic()
    app.run(duration=0.5)
    assert 0.5 <= time.monotonic() - started < 20
    assert frames


def test_layout_is_kept_in_the_state_folder_not_the_working_directory(
    tmp_path, display, gui_state_dir, monkeypatch
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    app = _app(tmp_path, [])
    app.run(duration=0.3)
    assert list(work.iterdir()) == []
    assert (gui_state_dir / "gui" / "window_test.ini").is_file()


def test_a_ui_error_closes_the_window_and_still_saves_the_recording(tmp_path, display):
    app = App("broken ui")
    app.streams(Stream("emg", SyntheticSource(2, 500.0)))
    app.before_run_hooks.append(lambda a: a.start_recording(tmp_path))

    @app.ui
    def ui(ctx):
        raise ZeroDivisionError("bug in the user's ui")

    with pytest.raises(ZeroDivisionError, match="user's ui"):
        app.run()
    assert app.ctx.state == "idle"
    assert len(app.ctx.packed) == 1


@pytest.mark.parametrize("where", ["in a window", "in a grid cell"])
def test_a_ui_error_under_the_test_engine_is_raised_not_an_abort(tmp_path, display, where):
    # A missing End() aborted the whole process (imgui's assert under the test engine): the
    # recording stayed unpacked and the test run died with it.
    app = App("broken ui")
    app.streams(Stream("emg", SyntheticSource(2, 500.0)))
    app.before_run_hooks.append(lambda a: a.start_recording(tmp_path))
    frames = []

    @app.ui
    def ui(ctx):
        frames.append(ctx.state)
        if len(frames) < 5:
            return
        if where == "in a window":
            imgui.begin("user window")
            imgui.push_id("open")
            raise ZeroDivisionError("bug in the user's ui")
        with Grid(1, 1)[0, 0]:
            raise ZeroDivisionError("bug in the user's ui")

    def script(ctx):
        ctx.sleep_no_skip(10.0, 0.05)  # the error ends the window long before

    gui = GuiScript(script)
    with pytest.raises(ZeroDivisionError, match="user's ui"):
        app.run(runner_params=gui.runner_params)
    assert app.ctx.state == "idle"
    assert len(app.ctx.packed) == 1


def test_no_display_is_a_clear_error_naming_headless(tmp_path):
    code = (
        "from labsession import App, Stream\n"
        "from labsession.sources import SyntheticSource\n"
        "app = App('x')\n"
        "s = Stream('emg', SyntheticSource(2, 100.0))\n"
        "app.streams(s)\n"
        "try:\n"
        "    app.run()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc, s.connected)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.startswith("DisplayError"), out.stderr
    assert "mode='headless'" in out.stdout
    assert out.stdout.strip().endswith("False")  # nothing was started


def test_a_broken_display_is_a_display_error_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":4242")
    app = _app(tmp_path, [])
    hooks = []
    app.before_run_hooks.append(hooks.append)
    with pytest.raises(DisplayError, match="headless"):
        app.run()
    assert hooks == []
    assert app.ctx.streams["emg"]._thread is None
    assert not (tmp_path / "sessions").exists()


def test_a_second_window_in_the_same_process_gets_fresh_widgets(tmp_path, display):
    from labsession.widgets import recording_controls

    seen = []
    for run in range(2):
        app = App(f"run {run}", class_names=["Rest", "Fist"])
        app.streams(Stream("emg", SyntheticSource(2, 200.0)))
        frames = []

        @app.ui
        def ui(ctx, frames=frames, app=app, run=run):
            frames.append(1)
            if len(frames) >= 5 * (run + 1):  # drawn first later than the first run's last frame
                seen.append(
                    recording_controls(
                        ctx, ["Rest", "Fist"], app.start_recording, app.stop_recording
                    )
                )
            if len(seen) > 2 * run:
                app.request_stop()

        app.run(duration=30)
    assert seen[0] is not seen[-1]
    assert seen[-1].state == "idle"
