"""`labsession record` stopped by signals: a real process, real SIGINT and SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from labsession.recording import open_session_store


def _record(args, out):
    proc = subprocess.Popen(
        [sys.executable, "-m", "labsession", "record", *args, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    return proc, lines, reader


def _end(proc, reader):
    proc.kill()
    proc.wait()
    reader.join(timeout=10)
    proc.stdout.close()


def _wait_for(lines, text, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, f"no {text!r} in: {''.join(lines)}"
        time.sleep(0.01)


def test_signals_while_the_recording_is_saved_are_not_obeyed(tmp_path):
    # A second Ctrl-C or a SIGTERM during the save left the session unpacked (exit 130, or
    # killed): the handlers were put back before the recording was stopped and packed.
    out = tmp_path / "sessions"
    args = ["--channels", "64", "--fs", "4096", "--cycle", "2", "--repeats", "3"]
    proc, lines, reader = _record(args, out)
    try:
        _wait_for(lines, "cue: Fist", proc)
        proc.send_signal(signal.SIGINT)
        # Keep signalling until the session is saved (the "packed:" line): every one of these
        # arrives while the recording is stopped, saved and packed.
        while not any("packed:" in line for line in lines) and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.02)
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        _end(proc, reader)
    output = "".join(lines)
    assert "received SIGTERM while saving: the session was saved first" in output
    (zip_path,) = out.glob("*.session.zip")
    assert sorted(p.name for p in out.iterdir()) == [zip_path.name]  # no folder, lock, temp
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") > 4096
    assert "effective" in output  # the integrity summary, as `labsession info` prints it


def test_sigterm_while_waiting_for_the_sources_ends_cleanly(tmp_path):
    # SIGTERM killed it silently before the handlers were installed.
    out = tmp_path / "sessions"
    args = ["--source", "lsl:labsession-test-never-there", "--connect-timeout", "60"]
    proc, lines, reader = _record(args, out)
    try:
        _wait_for(lines, "waiting up to 60 s for", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "".join(lines)
    finally:
        _end(proc, reader)
    assert "stopped while waiting for the sources: nothing was recorded" in "".join(lines)
    assert not out.exists() or list(out.iterdir()) == []
