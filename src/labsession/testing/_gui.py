"""Test the GUI for real: a virtual display, a bare imgui context, and scripted windows.

- :func:`xvfb_display` gives the process an X display (an Xvfb server of its own when none is set).
- :class:`ImguiFrames` draws widgets frame by frame in a real imgui + ImPlot context, no window.
- :class:`GuiScript` drives a real window (``App.run(mode="gui")`` or :func:`run_gui`) with imgui's
  test engine: click ``###ids``, wait, check, screenshot; :meth:`GuiScript.check` then raises what
  went wrong inside the window. The signal handlers the engine installs (fatal signals, and
  ``SIGPIPE``) are replaced by those from before once the window closes (the engine's would
  crash on a later fault or broken pipe).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "GuiScript",
    "ImguiFrames",
    "run_gui",
    "save_screenshot",
    "wait_frames",
    "xvfb_display",
]

#: The screen an Xvfb started by :func:`xvfb_display` has.
XVFB_SCREEN = "1280x1024x24"


@contextlib.contextmanager
def xvfb_display(*, force: bool = False) -> Iterator[str]:
    """Make sure ``$DISPLAY`` names a working X server while the block runs; yield its name.

    If ``DISPLAY`` is already set (a desktop, or ``xvfb-run``) it is used as it is, unless
    ``force``. Otherwise an ``Xvfb`` server of this process's own is started (``-noreset``, so
    several windows can open one after the other) on a free display number, and stopped after.

    Raises
    ------
    RuntimeError
        If no display is set and ``Xvfb`` is not installed (``apt-get install xvfb``) or fails.
    """
    current = os.environ.get("DISPLAY")
    if current and not force:
        yield current
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise RuntimeError(
            "no X display: set DISPLAY, or install Xvfb and Mesa "
            "(apt-get install xvfb libgl1-mesa-dri xauth) so the GUI can run on a virtual screen"
        )
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [
            xvfb,
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            XVFB_SCREEN,
            "-noreset",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb did not start (exit status {proc.poll()})")
        name = f":{number}"
        os.environ["DISPLAY"] = name
        try:
            yield name
        finally:
            if current is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = current
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ImguiFrames:
    """A real imgui and ImPlot context with no window: draw widgets over frames in a test.

    Every frame runs imgui's full ``new_frame`` / ``render``, with its checks (an unbalanced
    ``begin``/``end`` or a bad ID raises), so a widget that works here builds valid draw lists.

    Parameters
    ----------
    size
        Display size in pixels ``(width, height)``.

    Examples
    --------
    >>> with ImguiFrames() as frames:  # doctest: +SKIP
    ...     for _ in range(3):
    ...         with frames.frame():
    ...             my_widget.ui(ctx)
    """

    def __init__(self, size: tuple[int, int] = (1280, 800)):
        self.size = size
        self.n_frames = 0
        self.vertex_count = 0
        self._contexts: tuple[Any, Any] | None = None

    def __enter__(self) -> ImguiFrames:
        from imgui_bundle import imgui, implot

        context = imgui.create_context()
        plot_context = implot.create_context()
        io = imgui.get_io()
        io.display_size = imgui.ImVec2(*self.size)
        io.delta_time = 1 / 60
        io.set_ini_filename("")
        io.backend_flags |= imgui.BackendFlags_.renderer_has_textures.value
        self._contexts = (context, plot_context)
        return self

    def __exit__(self, *exc: object) -> None:
        from imgui_bundle import imgui, implot

        if self._contexts is not None:
            context, plot_context = self._contexts
            implot.destroy_context(plot_context)
            imgui.destroy_context(context)
            self._contexts = None

    @contextlib.contextmanager
    def frame(self, window: str = "test") -> Iterator[None]:
        """One frame: the block draws inside a window named ``window`` filling the display."""
        from imgui_bundle import imgui

        imgui.get_io().delta_time = 1 / 60
        imgui.new_frame()
        imgui.set_next_window_pos(imgui.ImVec2(0, 0))
        imgui.set_next_window_size(imgui.ImVec2(*self.size))
        imgui.begin(window)
        try:
            yield
        finally:
            imgui.end()
            imgui.render()
        self.n_frames += 1
        self.vertex_count = imgui.get_draw_data().total_vtx_count

    def draw(self, gui: Callable[[], None], frames: int = 1) -> None:
        """Call ``gui()`` inside ``frames`` frames."""
        for _ in range(frames):
            with self.frame():
                gui()


#: Signals whose handlers imgui's test engine replaces with its crash handler.
_ENGINE_SIGNALS = ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGPIPE")
_SIGACTION_BYTES = 512  # more than any platform's struct sigaction; handled as opaque bytes


class _SignalHandlers:
    """This process's handlers of the signals imgui's test engine takes, saved to be put back.

    The engine installs its crash handler for them when a window starts and leaves it installed:
    once the engine is gone, that handler itself crashes. Any later fault in the process then
    dies without Python's faulthandler traceback, and so does a write to a pipe whose reader has
    gone (``SIGPIPE``, which Python ignores to raise ``BrokenPipeError``), as a process pool's
    feeder thread does when a worker dies.
    """

    def __init__(self) -> None:
        self._saved: dict[int, Any] = {}
        self._libc = None if sys.platform == "win32" else ctypes.CDLL(None, use_errno=True)
        self.save()

    def save(self) -> None:
        """Save the handlers as they are now (before the engine starts)."""
        if self._libc is None:  # pragma: no cover - Windows: no sigaction; the engine uses SEH
            return
        self._saved = {}
        for name in _ENGINE_SIGNALS:
            number = getattr(signal, name, None)
            action = ctypes.create_string_buffer(_SIGACTION_BYTES)
            if number is not None and self._libc.sigaction(int(number), None, action) == 0:
                self._saved[int(number)] = action

    def restore(self) -> None:
        """Put the saved handlers back."""
        for number, action in self._saved.items():
            self._libc.sigaction(number, action, None)


class GuiScript:
    """A script that imgui's test engine runs inside a real window, as a user at the mouse.

    Pass :attr:`runner_params` to ``App.run(mode="gui", runner_params=...)`` or :func:`run_gui`;
    the script ``script(ctx)`` gets an ``imgui.test_engine.TestContext`` (``ctx.item_click(
    "**/###record")``, ``ctx.sleep_no_skip(1.0, 0.05)``, ...). When it returns, the window closes.
    Then call :meth:`check`: it raises the script's own exception, or a ``RuntimeError`` with the
    engine's log if the engine failed an action (an item not found), or if the window closed
    before the script ended.

    Parameters
    ----------
    script
        The test body.
    window_size
        Size of the window in pixels.
    run_speed
        ``"fast"`` (no mouse animation), ``"normal"`` or ``"cinematic"``.
    """

    def __init__(
        self,
        script: Callable[[Any], None],
        *,
        window_size: tuple[int, int] = (1280, 800),
        run_speed: str = "fast",
    ):
        from imgui_bundle import hello_imgui, imgui

        self.script = script
        self.done = False
        self.error: BaseException | None = None
        self.status: str | None = None
        self.log = ""
        self._test: Any = None
        params = hello_imgui.RunnerParams()
        params.app_window_params.window_geometry.size = window_size
        params.app_window_params.window_title = "labsession test"
        params.ini_disable = True
        params.use_imgui_test_engine = True
        params.fps_idling.enable_idling = False
        speed = getattr(imgui.test_engine.TestRunSpeed, run_speed)

        def register_tests() -> None:
            engine = hello_imgui.get_imgui_test_engine()
            io = imgui.test_engine.get_io(engine)
            io.config_run_speed = speed
            io.config_log_to_tty = True
            self._test = imgui.test_engine.register_test(engine, "labsession", "script")
            self._test.test_func = self._run
            imgui.test_engine.queue_test(engine, self._test)

        params.callbacks.register_tests = register_tests
        params.callbacks.before_imgui_render = self._close_when_done
        # saved again as the window starts (before the engine), put back once it has closed
        self._signal_handlers = _SignalHandlers()
        params.callbacks.post_init = self._signal_handlers.save
        params.callbacks.before_exit_post_cleanup = self._signal_handlers.restore
        self.runner_params = params

    def _run(self, ctx: Any) -> None:
        try:
            self.script(ctx)
        except BaseException as exc:  # noqa: BLE001 - re-raised by check()
            self.error = exc
            traceback.print_exc()
        finally:
            self.done = True

    def _close_when_done(self) -> None:
        from imgui_bundle import hello_imgui, imgui

        if not self.done or self.status is not None:
            return
        if not imgui.test_engine.is_test_queue_empty(hello_imgui.get_imgui_test_engine()):
            return
        self.status = self._test.output.status.name
        self.log = self._test.output.log.get_text()
        hello_imgui.get_runner_params().app_shall_exit = True

    def check(self) -> None:
        """Raise what went wrong in the window, if anything."""
        self._signal_handlers.restore()  # (again) should the window have ended early
        if self.error is not None:
            raise self.error
        if not self.done or self.status is None:
            raise RuntimeError("the window closed before the GUI script ended")
        if self.status != "success":
            raise RuntimeError(f"the GUI script failed ({self.status}):\n{self.log}")


def run_gui(gui: Callable[[], None], script: GuiScript, *, implot: bool = True) -> None:
    """Open a real window drawing ``gui()`` each frame, driven by ``script``; then check it.

    A widget can be tried in a window of its own, without an App.
    """
    from imgui_bundle import immapp

    params = script.runner_params
    params.callbacks.show_gui = gui
    immapp.run(params, immapp.AddOnsParams(with_implot=implot))
    script.check()


def save_screenshot(ctx: Any, path: str | os.PathLike[str]) -> Path:
    """From inside a script: write the whole window as a PNG to ``path``; return the path."""
    path = Path(path)
    ctx.yield_()
    ctx.capture_reset()
    ctx.capture_set_filename(str(path))
    if not ctx.capture_screenshot(0):
        raise RuntimeError(f"could not capture a screenshot to {path}")
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        ctx.yield_()
    return path


def wait_frames(ctx: Any, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """From inside a script: let frames run until ``predicate()`` holds; False after ``timeout`` s.

    The window keeps drawing meanwhile (unlike ``time.sleep``, which would freeze it).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        ctx.yield_()
    return True
