"""The first run on a machine says that it compiles the flow kernels; later runs do not."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from numba import njit

from labsession.motion import _kernel_compile
from labsession.motion._image_kernels import _mirror
from labsession.motion._kernel_compile import announce_compilation
from labsession.motion.synthetic import make_2p_video

MESSAGE = "compiling the flow kernels"


def _run(args: list[str], cache_dir: str) -> tuple[int, list[tuple[float, str]], float]:
    """Run the CLI with ``NUMBA_CACHE_DIR=cache_dir``; return its exit code, its stderr lines
    with the seconds after the start at which each arrived, and its total run time (s)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "labsession", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.monotonic() - started, line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=540)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    total = time.monotonic() - started
    reader.join(timeout=10)
    proc.stderr.close()
    return code, lines, total


# The cold run compiles the kernels: 10-40 s, longer on a busy machine.
@pytest.mark.timeout(600)
def test_first_run_says_it_compiles_and_the_next_does_not(tmp_path):
    video = tmp_path / "tiny.npy"
    np.save(video, make_2p_video(n_frames=4, shape=(32, 32), seed=7).video[..., 0])
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    args = ["motion", "compensate", str(video), "--no-qc"]

    code, lines, total = _run([*args, "-o", str(tmp_path / "cold")], str(cache))
    text = "".join(line for _, line in lines)
    assert code == 0, text
    arrivals = [at for at, line in lines if MESSAGE in line]
    assert len(arrivals) == 1, text
    # said when the compile starts, within the first seconds, not when it is over: the
    # compile is most of a cold run of a 4-frame video
    assert arrivals[0] < 60, text
    assert arrivals[0] < total / 2, f"message after {arrivals[0]:.1f} s of {total:.1f} s"
    assert "first run only" in text
    assert any(cache.rglob("*.nbi")), "the cold run left no numba cache"

    code, lines, _ = _run([*args, "-o", str(tmp_path / "warm")], str(cache))
    text = "".join(line for _, line in lines)
    assert code == 0, text
    assert MESSAGE not in text


def test_a_kernel_compile_is_announced_once_per_process(monkeypatch, caplog):
    monkeypatch.setattr(_kernel_compile, "_announced", False)
    caplog.set_level(logging.INFO, logger="labsession.motion._kernel_compile")
    with announce_compilation():
        # fresh dispatchers of a motion kernel: numba compiles each on its first call
        assert njit(_mirror.py_func)(-2, 5) == 2
        assert njit(_mirror.py_func)(6, 5) == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"{MESSAGE} (first run only, about {_kernel_compile.COMPILE_SECONDS} s)"
    ]
    done = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(done) == 2
    assert all(m.startswith("compiled flow kernel _mirror in ") for m in done)


def test_other_numba_code_and_calls_outside_the_block_are_not_announced(monkeypatch, caplog):
    monkeypatch.setattr(_kernel_compile, "_announced", False)
    caplog.set_level(logging.INFO, logger="labsession.motion._kernel_compile")
    with announce_compilation():
        assert njit(lambda x: x + 1)(1) == 2  # not a motion kernel
    assert njit(_mirror.py_func)(-1, 5) == 1  # a motion kernel, outside the block
    assert caplog.records == []
