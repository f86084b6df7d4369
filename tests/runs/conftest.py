"""Helpers for the run-session tests: write a script, run it in a real subprocess, poll."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")


def write_script(folder: Path, name: str, body: str) -> Path:
    """Write a script file from dedented ``body``."""
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def script_env() -> dict[str, str]:
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    env.pop("LABSESSION_NOTIFY_HOOK", None)
    return env


def run_script(script: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with this interpreter in its own folder and capture its output."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=script.parent,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for(predicate: Callable[[], bool], *, timeout: float = 60.0, what: str = "") -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


def make_run_dirs(root: Path, n: int, *, n_files: int = 7) -> list[Path]:
    """Create ``n`` run folders named like run IDs, each with ``n_files`` small files."""
    names = [
        "logs/stdout.log",
        "logs/stderr.log",
        "CONFIGS/CONFIG.yaml",
        "CONFIGS/CONFIG.json",
        "CONFIGS/args.yaml",
        "CONFIGS/args.json",
        "result.csv",
    ]
    made = []
    for i in range(n):
        run = root / f"2026Y-01M-02D-03h{i // 60 % 60:02d}m{i % 60:02d}s_t{i:03d}"
        for j, name in enumerate(names[:n_files]):
            target = run / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f"run {i} file {j}\n".encode() * (j + 1))
        made.append(run)
    return made


@pytest.fixture(autouse=True)
def _keep_import_hooks():
    """start() may add a hook that seeds torch on import; do not leak it to other tests."""
    before = list(sys.meta_path)
    yield
    sys.meta_path[:] = before
