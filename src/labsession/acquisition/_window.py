"""``App.run(mode="gui")``: the app's window loop (imgui-bundle's hello_imgui runner + ImPlot)."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from labsession.core.paths import user_state_dir
from labsession.errors import DisplayError

if TYPE_CHECKING:
    from labsession.acquisition._app import App

__all__ = ["check_display", "run_window"]

log = logging.getLogger(__name__)

#: Frames per second while the user interacts; the window never draws faster.
FPS_MAX = 60.0
#: Frames per second while the user does not touch the window (live plots stay live).
FPS_IDLE = 25.0

_HEADLESS_HINT = (
    "run the app without a window with app.run(mode='headless'), or on a virtual display: "
    "xvfb-run -a python your_script.py"
)


def check_display() -> None:
    """Raise :class:`DisplayError` if this process has no display to open a window on.

    On Linux and the BSDs: no ``DISPLAY`` nor ``WAYLAND_DISPLAY``, or an X display that does not
    answer (asked through libX11, when it is installed, and only without Wayland).
    """
    if sys.platform in ("win32", "darwin"):
        return
    x_display, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if not (x_display or wayland):
        raise DisplayError(f"no display for the GUI (DISPLAY is not set): {_HEADLESS_HINT}")
    if x_display and not wayland and not _x_display_answers(x_display):
        raise DisplayError(f"the X display {x_display!r} does not answer: {_HEADLESS_HINT}")


def _x_display_answers(name: str) -> bool:
    """True if X display ``name`` accepts a connection (or libX11 cannot be found to ask)."""
    import ctypes
    import ctypes.util

    library = ctypes.util.find_library("X11")
    if library is None:
        return True
    try:
        xlib = ctypes.CDLL(library)
    except OSError:
        return True
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = xlib.XOpenDisplay(name.encode())
    if not handle:
        return False
    xlib.XCloseDisplay(handle)
    return True


def ini_path(app_name: str) -> str:
    """Where the window layout of app ``app_name`` is kept (the per-user state folder)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", app_name).strip("._") or "app"
    return str(user_state_dir() / "gui" / f"{safe}.ini")


def run_window(
    app: App,
    *,
    window_size: tuple[int, int],
    runner_params: Any = None,
    duration: float | None = None,
) -> None:
    """Open the app's window and draw ``@app.ui`` every frame until it is closed.

    The window closes when the user closes it, when ``app.request_stop()`` is called (Ctrl-C,
    SIGTERM), after ``duration`` seconds, or when the runner's ``app_shall_exit`` is set.
    """
    from imgui_bundle import hello_imgui, imgui, immapp

    params = runner_params if runner_params is not None else hello_imgui.RunnerParams()
    params.app_window_params.window_geometry.size = tuple(window_size)
    if not params.app_window_params.window_title:
        params.app_window_params.window_title = app.name
    if not params.ini_disable:
        ini = ini_path(app.name)
        os.makedirs(os.path.dirname(ini), exist_ok=True)
        params.ini_folder_type = hello_imgui.IniFolderType.absolute_path
        params.ini_filename = ini
    params.fps_idling.fps_max = FPS_MAX
    params.fps_idling.fps_idle = FPS_IDLE
    deadline = None if duration is None else time.monotonic() + duration
    frames = 0
    failed: list[BaseException] = []

    def show_gui() -> None:
        nonlocal frames
        frames += 1
        runner = hello_imgui.get_runner_params()
        if app.stop_requested or (deadline is not None and time.monotonic() >= deadline):
            runner.app_shall_exit = True
        if failed:  # the frames until the window closes draw nothing
            return
        state = imgui.internal.ErrorRecoveryState()
        imgui.internal.error_recovery_store_state(state)
        try:
            app.draw_ui()
        except BaseException as exc:  # noqa: BLE001 - raised from run_window once closed
            failed.append(exc)
            runner.app_shall_exit = True
            _recover(state)

    params.callbacks.show_gui = show_gui
    try:
        immapp.run(params, immapp.AddOnsParams(with_implot=True))
    except RuntimeError as exc:
        if frames == 0 and "glfw" in str(exc).lower():
            raise DisplayError(
                f"could not open a window on display {os.environ.get('DISPLAY')!r} ({exc}): "
                f"{_HEADLESS_HINT}"
            ) from exc
        raise
    if failed:
        raise failed[0]


def _recover(state: Any) -> None:
    """End what a ``@app.ui`` that raised left open (windows, ids, styles), as imgui's error
    recovery does, so the frame ends cleanly: a missing ``End()`` would otherwise abort the
    process under imgui's test engine. Its messages go to the debug log, not to an assert."""
    from imgui_bundle import imgui

    io = imgui.get_io()
    asserting = io.config_error_recovery_enable_assert
    io.config_error_recovery_enable_assert = False
    try:
        imgui.internal.error_recovery_try_to_recover_state(state)
        # A cursor moved (a layout cell) with no item after it fails the window's End().
        imgui.dummy(imgui.ImVec2(0, 0))
    finally:
        io.config_error_recovery_enable_assert = asserting
