"""The GUI test tools leave the process as they found it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# A window driven by the test engine, then what other tests or libraries in the same process
# may do much later: write to a pipe whose reader has gone, and fault.
AFTER_A_WINDOW = textwrap.dedent(
    """
    import ctypes, faulthandler, os, signal
    from imgui_bundle import imgui
    from labsession.testing import GuiScript, run_gui

    libc = ctypes.CDLL(None)
    def handlers():
        out = {}
        for number in signal.valid_signals():
            action = ctypes.create_string_buffer(512)
            if libc.sigaction(int(number), None, action) == 0:
                out[int(number)] = action.raw[:8]  # the handler's address
        return out

    faulthandler.enable()
    before = handlers()
    run_gui(lambda: imgui.text("hi"), GuiScript(lambda ctx: ctx.yield_(2)))
    changed = [signal.Signals(n).name for n, h in handlers().items() if before[n] != h]
    print("changed handlers:", changed, flush=True)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        os.write(write_end, b"x")
    except BrokenPipeError:
        print("broken pipe raised", flush=True)
    ctypes.string_at(0)  # reads address 0: a segmentation fault
    """
)


def test_a_window_leaves_the_signal_handlers_as_they_were(display, tmp_path):
    # imgui's test engine installs a crash handler of its own (fatal signals and SIGPIPE) and
    # leaves it behind; once the engine is gone it crashes in turn: a full-suite run died with
    # SIGSEGV in a process pool's feeder thread writing to the pipe of a killed worker.
    script = tmp_path / "after_a_window.py"
    script.write_text(AFTER_A_WINDOW, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "changed handlers: []" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "broken pipe raised" in done.stdout, done.stderr[-2000:]
    assert done.returncode == -11, done.stderr[-2000:]
    assert "Fatal Python error: Segmentation fault" in done.stderr
    fault = "ctypes.string_at(0)"
    line = next(n for n, text in enumerate(AFTER_A_WINDOW.splitlines(), 1) if fault in text)
    assert f'File "{script}", line {line}' in done.stderr
