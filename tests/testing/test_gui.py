"""The GUI test tools leave the process as they found it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# A window driven by the test engine, then a fault in the same process (as another test or
# library might cause much later).
FAULT_AFTER_A_WINDOW = textwrap.dedent(
    """
    import ctypes, faulthandler
    from imgui_bundle import imgui
    from labsession.testing import GuiScript, run_gui

    faulthandler.enable()
    run_gui(lambda: imgui.text("hi"), GuiScript(lambda ctx: ctx.yield_(2)))
    print("window closed", flush=True)
    ctypes.string_at(0)  # reads address 0: a segmentation fault
    """
)


def test_a_fault_after_a_window_closed_gets_python_s_traceback(display, tmp_path):
    # imgui's test engine installs a crash handler of its own and leaves it behind; once the
    # engine is gone it crashes in turn, hiding where the fault was.
    script = tmp_path / "fault_after_window.py"
    script.write_text(FAULT_AFTER_A_WINDOW, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "window closed" in done.stdout, done.stderr[-2000:]
    assert done.returncode == -11, done.stderr[-2000:]
    assert "Fatal Python error: Segmentation fault" in done.stderr
    assert f'File "{script}", line 9' in done.stderr
