"""ProcessLauncher with real subprocesses: output, stop, exit codes, bad argv, close, a window."""

import gc
import os
import sys
import time

import pytest

from labsession.testing import GuiScript, ImguiFrames, run_gui, wait_until
from labsession.widgets._launcher import RED, ProcessLauncher, status_colour
from labsession.widgets._process_output import OutputBuffer

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

SLEEPER = [sys.executable, "-c", "print('hello'); import time; time.sleep(30)"]
# Ignores SIGTERM (after saying so), so only SIGKILL ends it.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready'); "
    "time.sleep(30)",
]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(pid):
    """``pid`` ended: no such process, or a zombie left to an init that never reaps it."""
    if not _alive(pid):
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except (FileNotFoundError, IndexError):
        return True


def test_start_captures_output_and_stop_ends_it():
    with ProcessLauncher([("sleeper", SLEEPER)]) as launcher:
        assert launcher.status(0).state == "idle"
        status = launcher.start(0)
        assert status.state == "running"
        assert wait_until(lambda: "hello" in launcher.output(0), timeout=10)
        assert launcher.output(0)[0].startswith("$ ")  # the command heads the output
        launcher.stop(0)
        assert wait_until(lambda: launcher.status(0).state == "stopped", timeout=10)
        status = launcher.status(0)
        assert status.returncode == -15
        assert status.ok
        assert status.describe() == "stopped (killed by SIGTERM)"
        assert not _alive(status.pid)


def test_stop_never_waits_in_the_frame():
    launcher = ProcessLauncher([("stubborn", STUBBORN)], stop_timeout=0.5)
    launcher.start(0)
    assert wait_until(lambda: "ready" in launcher.output(0), timeout=10)
    with ImguiFrames() as frames:
        started = time.monotonic()
        future = launcher.stop(0)
        frames.draw(launcher.ui)
        assert time.monotonic() - started < 0.3
        assert launcher.status(0).state == "stopping"
        assert future.result(timeout=10) == -9  # SIGTERM ignored: killed after the timeout
        frames.draw(launcher.ui)
    assert launcher.status(0).state == "stopped"
    launcher.close()


def test_exit_code_shows_red_with_the_code():
    argv = [sys.executable, "-c", "import sys; print('oops', file=sys.stderr); sys.exit(3)"]
    with ProcessLauncher([("failing", argv)]) as launcher, ImguiFrames() as frames:
        launcher.start(0)
        assert wait_until(lambda: launcher.status(0).state == "exited", timeout=10)
        status = launcher.status(0)
        assert status.returncode == 3
        assert not status.ok
        assert status.describe() == "exited with code 3"
        assert status_colour(status) == RED
        assert wait_until(lambda: "oops" in launcher.output(0), timeout=10)  # stderr merged
        frames.draw(launcher.ui, frames=2)


def test_clean_exit_is_grey_not_red():
    with ProcessLauncher([("ok", [sys.executable, "-c", "pass"])]) as launcher:
        launcher.start(0)
        assert wait_until(lambda: launcher.status(0).state == "exited", timeout=10)
        assert launcher.status(0).ok
        assert status_colour(launcher.status(0)) != RED


def test_bad_argv_shows_the_error_and_never_raises():
    with ProcessLauncher([("missing", ["/no/such/program", "--flag"])]) as launcher:
        status = launcher.start(0)
        assert status.state == "failed"
        assert "FileNotFoundError" in status.error
        assert "/no/such/program" in status.error
        assert status_colour(status) == RED
        with ImguiFrames() as frames:
            frames.draw(launcher.ui, frames=2)


@pytest.mark.parametrize(
    ("processes", "match"),
    [
        ([("x", [])], "argv must be a non-empty list"),
        ([("x", "python -c pass")], "argv must be a non-empty list"),
        ([("x",)], r"processes\[0\] must be a \(label, argv\) pair"),
        ([("x", [sys.executable, 3])], "argv items must be str"),
    ],
)
def test_bad_process_lists_are_refused(processes, match):
    with pytest.raises(ValueError, match=match):
        ProcessLauncher(processes)


def test_close_ends_every_process_terminate_then_kill():
    launcher = ProcessLauncher(
        [("a", SLEEPER), ("b", SLEEPER), ("stubborn", STUBBORN)], stop_timeout=0.5
    )
    for i in range(3):
        launcher.start(i)
    assert wait_until(lambda: "ready" in launcher.output(2), timeout=10)
    started = time.monotonic()
    launcher.close()
    assert time.monotonic() - started < 5
    codes = [launcher.status(i).returncode for i in range(3)]
    assert codes == [-15, -15, -9]
    assert not any(_alive(launcher.status(i).pid) for i in range(3))
    launcher.close()  # idempotent


def test_garbage_collected_launcher_ends_its_processes():
    launcher = ProcessLauncher([("sleeper", SLEEPER)])
    pid = launcher.start(0).pid
    del launcher
    gc.collect()
    assert wait_until(lambda: not _alive(pid), timeout=10)


def test_output_keeps_the_last_200_lines():
    argv = [sys.executable, "-c", "for i in range(1000): print(f'line {i}')"]
    with ProcessLauncher([("chatty", argv)]) as launcher:
        launcher.start(0)
        assert wait_until(lambda: launcher.output(0)[-1:] == ["line 999"], timeout=10)
        output = launcher.output(0)
        assert len(output) == 200
        assert output[0] == "line 800"


def test_restart_after_exit_starts_fresh_output():
    argv = [sys.executable, "-c", "import os; print(os.getpid())"]
    with ProcessLauncher([("pid", argv)]) as launcher:
        first = launcher.start(0).pid
        assert wait_until(lambda: launcher.output(0)[-1:] == [str(first)], timeout=10)
        assert wait_until(lambda: launcher.status(0).state == "exited", timeout=10)
        second = launcher.start(0).pid
        assert wait_until(lambda: launcher.output(0)[-1:] == [str(second)], timeout=10)
        assert str(first) not in launcher.output(0)


# A shell whose child (the grandchild) is a plain `sleep`; the shell prints its pid.
SHELL_WITH_CHILD = ["sh", "-c", "sleep 60 & echo $!; wait"]
# The same with Python: Popen, print the pid, sleep.
PYTHON_WITH_CHILD = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; "
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(p.pid); time.sleep(60)",
]


def _grandchild_pid(launcher, i=0):
    # The pid is the first all-digit line: the grandchild may print after it.
    def pid_lines():
        return [line for line in launcher.output(i) if line.isdigit()]

    assert wait_until(lambda: bool(pid_lines()), timeout=10)
    return int(pid_lines()[0])


def _reader_ended(launcher, i=0):
    reader = launcher._helpers[i].reader
    return reader is not None and not reader.is_alive()


@posix_only
@pytest.mark.parametrize("argv", [SHELL_WITH_CHILD, PYTHON_WITH_CHILD], ids=["sh", "python"])
def test_close_ends_the_grandchildren_too(argv):
    launcher = ProcessLauncher([("parent", argv)], stop_timeout=2.0)
    pid = launcher.start(0).pid
    grandchild = _grandchild_pid(launcher)
    try:
        started = time.monotonic()
        launcher.close()
        assert time.monotonic() - started < 1.5  # both end on SIGTERM
        assert launcher.status(0).returncode == -15
        assert wait_until(lambda: _gone(pid) and _gone(grandchild), timeout=5)
        assert wait_until(lambda: _reader_ended(launcher), timeout=5)
    finally:
        if not _gone(grandchild):
            os.kill(grandchild, 9)


@posix_only
def test_stop_kills_a_grandchild_that_ignores_sigterm():
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        'print("ignoring", flush=True); time.sleep(60)'
    )
    argv = ["sh", "-c", f"{sys.executable} -c '{stubborn}' & echo $!; wait"]
    launcher = ProcessLauncher([("parent", argv)], stop_timeout=0.5)
    launcher.start(0)
    grandchild = _grandchild_pid(launcher)
    try:
        assert wait_until(lambda: "ignoring" in launcher.output(0), timeout=10)
        assert launcher.stop(0).result(timeout=10) == -15  # the shell ends on SIGTERM ...
        assert wait_until(lambda: _gone(grandchild), timeout=5)  # ... its child on SIGKILL
        assert wait_until(lambda: _reader_ended(launcher), timeout=5)
    finally:
        if not _gone(grandchild):
            os.kill(grandchild, 9)
        launcher.close()


@posix_only
def test_children_left_by_an_exited_process_end_at_close():
    launcher = ProcessLauncher([("parent", ["sh", "-c", "sleep 60 & echo $!"])])
    launcher.start(0)
    grandchild = _grandchild_pid(launcher)
    try:
        assert wait_until(lambda: launcher.status(0).state == "exited", timeout=10)
        assert launcher.status(0).ok
        assert not _gone(grandchild)
        launcher.close()
        assert wait_until(lambda: _gone(grandchild), timeout=5)
        assert launcher.status(0).state == "exited"  # the shell's own status stays
    finally:
        if not _gone(grandchild):
            os.kill(grandchild, 9)


@posix_only
def test_reader_ends_even_if_a_process_that_left_the_group_holds_the_pipe():
    # The daemon says when it has left the group: until then a SIGTERM to the group ends it.
    daemon = "import os, time; os.setsid(); print('escaped', flush=True); time.sleep(60)"
    argv = [
        sys.executable,
        "-c",
        f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', {daemon!r}]);"
        " print(p.pid); time.sleep(60)",
    ]
    launcher = ProcessLauncher([("parent", argv)])
    launcher.start(0)
    escaped = _grandchild_pid(launcher)
    try:
        assert wait_until(lambda: "escaped" in launcher.output(0), timeout=10)
        started = time.monotonic()
        launcher.close()
        assert time.monotonic() - started < 3
        assert _reader_ended(launcher)
    finally:
        os.kill(escaped, 9)


def test_endless_output_without_newline_stays_bounded():
    size = 50 << 20
    argv = [
        sys.executable,
        "-c",
        "import sys, time\nfor _ in range(50): sys.stdout.buffer.write(b'x' * (1 << 20))\n"
        "sys.stdout.flush(); time.sleep(60)",
    ]
    with ProcessLauncher([("flood", argv)]) as launcher:
        launcher.start(0)
        tail = f"… [{size - 4096} more characters]"
        assert wait_until(lambda: launcher.output(0)[-1].endswith(tail), timeout=8)
        output = launcher.output(0)
        assert sum(map(len, output)) < 1 << 20
        assert output[-1] == "x" * 4096 + tail
        assert launcher.stop(0).result(timeout=5) == -15
        assert wait_until(lambda: launcher.output(0)[-1] == "x" * 4096 + tail, timeout=5)


def test_output_lines_are_cut_decoded_and_split_like_a_terminal():
    code = (
        "import sys, time; out = sys.stdout.buffer\n"
        r"for part in [b'y' * 5000, b'\n\xc3', b'\xa9\r', b'\nbad \xff\r\n', b'Name: ']:"
        "\n"
        "    out.write(part); out.flush(); time.sleep(0.05)\n"
        "time.sleep(60)"
    )
    with ProcessLauncher([("chunks", [sys.executable, "-c", code])]) as launcher:
        launcher.start(0)
        assert wait_until(lambda: launcher.output(0)[-1] == "Name: ", timeout=10)
        expected = ["y" * 4096 + "… [904 more characters]", "é", "bad \ufffd", "Name: "]
        assert launcher.output(0)[1:] == expected


def test_output_buffer_byte_by_byte():
    data = "a\r\nb\rc\n\nδ€ " + "z" * 20 + "\nlast"
    buffer = OutputBuffer(max_lines=4, max_line_chars=8, first_line="$ cmd")
    for byte in data.encode():
        buffer.feed(bytes([byte]))
    assert buffer.lines() == ["c", "", "δ€ zzzzz… [15 more characters]", "last"]
    buffer.feed(b"\n" * 1000 + b"end\n\xe2\x82")  # lines beyond max_lines, a cut character
    buffer.finish()
    assert buffer.lines() == ["", "", "end", "\ufffd"]


def _poll(ctx, predicate, timeout=10.0):
    """Let frames run until ``predicate()`` holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        ctx.sleep_no_skip(0.05, 0.05)


@pytest.mark.gui
def test_start_and_stop_buttons_in_a_window(display):
    launcher = ProcessLauncher([("sleeper", SLEEPER)])

    def script(ctx):
        ctx.item_click("**/###start_0")
        _poll(ctx, lambda: "hello" in launcher.output(0))
        assert launcher.status(0).state == "running"
        ctx.item_click("**/###output_0")  # unfold the output
        assert ctx.item_is_opened("**/###output_0")
        ctx.item_click("**/###stop_0")
        _poll(ctx, lambda: launcher.status(0).state == "stopped")

    try:
        run_gui(launcher.ui, GuiScript(script))
    finally:
        launcher.close()
    assert launcher.status(0).returncode == -15


def test_docstring_examples_run():
    import doctest

    from labsession.widgets import _launcher as module

    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
