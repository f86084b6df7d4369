"""``labsession synth`` and ``record --source lsl:NAME=STREAM`` over a real LSL outlet.

The outlet is ``labsession synth`` itself in another process, so these also check that its
chunks arrive whole.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from labsession.cli._sources import parse_source
from labsession.recording import open_session_store

from .conftest import run_cli


@pytest.fixture
def synth_outlet(tmp_path):
    """Start ``labsession synth`` on a fresh LSL name (3 channels at 500 Hz); yield the name."""
    name = f"labsession-cli-test-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "labsession", "synth", "--lsl", name, "--channels", "3"]
    proc = subprocess.Popen(
        [*argv, "--fs", "500", "--duration", "120"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("publishing LSL stream")  # the outlet is up
        yield name
    finally:
        proc.terminate()  # SIGTERM: synth stops pushing and exits 0
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert stderr == ""  # no "A single sample is pushed", no liblsl INFO lines


def test_synth_pushes_chunks_and_keeps_liblsl_quiet(tmp_path):
    result = run_cli(tmp_path, "synth", "--lsl", f"quiet-{uuid.uuid4().hex[:8]}", "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert "single sample" not in result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("publishing LSL stream")
    assert tree_is_empty(tmp_path)


def test_synth_verbose_shows_liblsl_log(tmp_path):
    result = run_cli(
        tmp_path, "-v", "synth", "--lsl", f"loud-{uuid.uuid4().hex[:8]}", "--duration", "0.2"
    )
    assert result.returncode == 0, result.stderr
    assert "INFO|" in result.stderr  # liblsl's own lines are back with -v


def tree_is_empty(folder):
    return not any(folder.iterdir())


def test_record_names_an_lsl_stream_with_equals(tmp_path, synth_outlet):
    argv = ["record", "--source", f"lsl:{synth_outlet}=emg", "--classes", "Rest,Fist"]
    argv += ["--cycle", "0.2", "--repeats", "1", "--out", "s", "--connect-timeout", "60"]
    result = run_cli(tmp_path, *argv)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no liblsl INFO (or shutdown ERR) lines without -v
    (packed,) = (tmp_path / "s").glob("*.session.zip")
    with open_session_store(packed) as store:
        assert store.stream_names == ["emg"]
        assert store.stream_info("emg").n_channels == 3
        assert store.n_samples("emg") > 100  # ~0.6 s at 500 Hz, pushed in chunks


def test_source_specs():
    assert parse_source("synthetic").stream == "emg"
    assert parse_source("synthetic=glove").stream == "glove"
    amp = parse_source("lsl:My Amp")
    assert (amp.kind, amp.lsl_name, amp.stream) == ("lsl", "My Amp", "My_Amp")  # the outlet's
    named = parse_source("lsl:My Amp=emg")
    assert (named.lsl_name, named.stream) == ("My Amp", "emg")
    assert parse_source("lsl:a=b=c").lsl_name == "a=b"  # the last "=" names the stream
