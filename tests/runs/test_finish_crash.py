"""A run killed while its folder is deleted after a copy across file systems leaves no part of it
in RUNNING/ (where it would read as a run that died)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from labsession.runs import running2finished

# Deletes part of the run folder for real, then stalls: the test kills it there with SIGKILL.
HALF_DELETING_CLOSE = """
import shutil, sys, time
from pathlib import Path
from labsession.runs import running2finished

real_rmtree = shutil.rmtree


def half_then_stall(path, *args, **kwargs):
    if ".copying" in str(path):  # the copy's temporary: not the run folder
        return real_rmtree(path, *args, **kwargs)
    real_rmtree(Path(path) / "logs")
    print("half-deleted", flush=True)
    time.sleep(600)


shutil.rmtree = half_then_stall
running2finished({"SDIR_RUN": sys.argv[1]}, exit_status=0)
"""

RUN_A = "2026Y-05M-17D-14h23m05s_a1B2"
RUN_B = "2026Y-05M-17D-14h24m05s_c3D4"


def _run(running: Path, name: str) -> Path:
    folder = running / name
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "stdout.log").write_text("hello\n" * 100)
    (folder / "CONFIGS").mkdir()
    (folder / "CONFIGS" / "CONFIG.json").write_text("{}")
    (folder / "result.bin").write_bytes(b"\1" * 50_000)
    return folder


@pytest.mark.slow
def test_sigkill_while_deleting_a_copied_run_leaves_no_part_of_it_in_running(tmp_path):
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the temp folder")
    target = Path(tempfile.mkdtemp(dir=other))
    try:
        out = tmp_path / "analysis_out"
        running = out / "RUNNING"
        run_a, run_b = _run(running, RUN_A), _run(running, RUN_B)
        (out / "FINISHED_SUCCESS").symlink_to(target)  # finished runs live elsewhere
        proc = subprocess.Popen(
            [sys.executable, "-c", HALF_DELETING_CLOSE, str(run_a)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline() == "half-deleted\n"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()

        finished = target / RUN_A
        assert (finished / "result.bin").read_bytes() == b"\1" * 50_000
        assert (finished / "logs" / "stdout.log").read_text() == "hello\n" * 100
        # No half-deleted run under its ID in RUNNING/: only run B, still running.
        assert not run_a.exists()
        assert sorted(p.name for p in running.iterdir() if not p.name.startswith(".")) == [RUN_B]

        # The next run to finish deletes the leftover.
        running2finished({"SDIR_RUN": str(run_b)}, exit_status=0)
        assert (target / RUN_B / "result.bin").is_file()
        assert not running.exists() or not list(running.iterdir())
    finally:
        shutil.rmtree(target, ignore_errors=True)
