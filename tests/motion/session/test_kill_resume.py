"""A run killed with SIGKILL mid-stage, then rerun, ends with the same results as an
uninterrupted run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from labsession.motion import open_video
from labsession.motion.session import recording_dir, run_session, session_state

from .conftest import fast_config


def _wait_for(predicate, proc: subprocess.Popen, *, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the child finished (rc {proc.returncode}) before the kill point")
        time.sleep(0.002)
    raise AssertionError("the kill point was not reached before the deadline")


def _has_partial(folder: Path, prefix: str = ".") -> bool:
    try:
        return any(p.name.startswith(prefix) for p in folder.iterdir())
    except FileNotFoundError:
        return False


def _arrays(config) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(config.root.glob("*.tif")):
        folder = recording_dir(config, path)
        with h5py.File(folder / "compensated.hdf5", "r") as f:
            out[f"{path.stem}/compensated"] = f["mov"][:]
        with h5py.File(folder / "idx.hdf", "r") as f:
            out[f"{path.stem}/valid"] = f["valid"][:]
        with np.load(folder / "w_to_reference.npz") as data:
            out[f"{path.stem}/u"], out[f"{path.stem}/v"] = data["u"], data["v"]
        with open_video(config.final_dir / f"aligned_{path.stem}.tif") as reader:
            out[f"{path.stem}/aligned"] = reader[:]
    with np.load(config.final_dir / "final_valid_idx.npz") as data:
        for key in ("final_valid", "aligned_valid_masks", "per_seq_valid_masks"):
            out[key] = data[key]
    return out


@pytest.fixture(scope="module")
def long_session(tmp_path_factory: pytest.TempPathFactory):
    from labsession.motion.session import make_synthetic_session

    root = tmp_path_factory.mktemp("long") / "data"
    make_synthetic_session(root, n_frames=120, seed=3)
    return root


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, long_session: Path):
    import shutil

    root = tmp_path_factory.mktemp("uninterrupted") / "data"
    shutil.copytree(long_session, root)
    config = fast_config(root, align_chunk_size=8, flow_options={"buffer_size": 16})
    run_session(config, progress=False)
    return _arrays(config)


@pytest.mark.slow
@pytest.mark.parametrize("kill_point", ["stage1", "stage3"])
def test_sigkill_mid_stage_then_rerun_equals_uninterrupted(
    tmp_path: Path, long_session: Path, uninterrupted: dict, kill_point: str
) -> None:
    import shutil

    root = tmp_path / "data"
    shutil.copytree(long_session, root)
    config = fast_config(root, align_chunk_size=8, flow_options={"buffer_size": 16})
    proc = subprocess.Popen(
        [sys.executable, "-c", _child_code(root, stall_in_stage3=kill_point == "stage3")],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if kill_point == "stage1":
            # rec_1's compensated video is being written: its temporary file exists
            folder = recording_dir(config, root / "rec_1.tif")
            _wait_for(lambda: _has_partial(folder, ".compensated."), proc)
        else:
            # stage 3 is re-projecting rec_1 (rec_0's aligned video is already published)
            _wait_for(
                lambda: (
                    (config.final_dir / "aligned_rec_0.tif").exists()
                    and _has_partial(config.final_dir, ".aligned_rec_1.")
                ),
                proc,
            )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    state = session_state(config)
    if kill_point == "stage1":
        assert state["recordings"][0]["stage1"] == "done"
        assert state["recordings"][1]["stage1"].startswith("running")
        assert state["recordings"][2]["stage1"] == "pending"
        status = json.loads((recording_dir(config, root / "rec_1.tif") / "status.json").read_text())
        assert status["stage1"] == "running"
    else:
        assert all(r["stage2"] == "done" for r in state["recordings"])
        assert state["session"]["stage3"] == "running"

    run_session(config, progress=False)  # resume
    resumed = _arrays(config)
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    assert not [p for p in config.final_dir.iterdir() if p.name.startswith(".")]
    for path in sorted(root.glob("*.tif")):
        assert not _has_partial(recording_dir(config, path))
    log = (recording_dir(config, root / "rec_1.tif") / "session.log").read_text()
    if kill_point == "stage1":
        assert "partial file(s) left in" in log


# Stage 3 re-projects rec_1 in a few tens of ms, which a poll by a test waiting for a CPU can
# miss: the child stalls there, rec_1's aligned video half written, until the test kills it.
STALL_IN_STAGE3 = """
import time
import labsession.motion.warping as warping

real_warp, calls = warping.warp_video, []


def warp_then_stall(*args, **kwargs):
    final = config.final_dir
    if (final / "aligned_rec_0.tif").exists() and any(final.glob(".aligned_rec_1.*")):
        calls.append(1)
        if len(calls) == 2:  # one chunk of rec_1 written
            time.sleep(600)
    return real_warp(*args, **kwargs)


warping.warp_video = warp_then_stall
"""


def _child_code(
    root: Path, *, stall_in_stage3: bool = False, n_workers: int = 1, progress: bool = False
) -> str:
    """All three stages on 120-frame recordings (in one process when n_workers=1)."""
    return (
        "import sys\n"
        "from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from conftest import fast_config\n"
        "from labsession.motion.session import run_session\n"
        f"config = fast_config(Path({str(root)!r}), align_chunk_size=8,"
        f" flow_options={{'buffer_size': 16}}, n_workers={n_workers})\n"
        + (STALL_IN_STAGE3 if stall_in_stage3 else "")
        + f"if __name__ == '__main__':\n    run_session(config, progress={progress})\n"
    )


@pytest.mark.slow
def test_workers_of_a_killed_run_exit_and_the_resume_equals_uninterrupted(
    tmp_path: Path, long_session: Path, uninterrupted: dict
) -> None:
    import select
    import shutil

    root = tmp_path / "data"
    shutil.copytree(long_session, root)
    config = fast_config(root, align_chunk_size=8, flow_options={"buffer_size": 16}, n_workers=2)
    folders = [recording_dir(config, path) for path in sorted(root.glob("*.tif"))]
    # progress=True: stage 1 also starts a manager process for the workers' frame counts
    proc = subprocess.Popen(
        [sys.executable, "-c", _child_code(root, n_workers=2, progress=True)],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        # a worker is writing a compensated video: kill the run's main process only, as the
        # OOM killer would
        _wait_for(lambda: any(_has_partial(f, ".compensated.") for f in folders), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # Every process holding the run's stdout (its workers, the manager) has exited.
        deadline, ended = time.monotonic() + 30, False
        while not ended and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            ended = bool(ready) and not proc.stdout.read()
        assert ended, "processes of the killed run are still alive, holding its stdout open"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()

    run_session(config, progress=False)  # resume
    resumed = _arrays(config)
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    for folder in [*folders, config.final_dir]:
        assert not _has_partial(folder)


# Runs the session with other stage-2 settings (sigma_smooth=3) and stalls when ``stage`` of
# rec_0 has published its new result, before status.json records it: the test kills it there.
STALL_BEFORE_STATUS = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import fast_config
from labsession.motion.session import _stage2, _stage3, run_session

stage = {stage!r}
module = _stage2 if stage == "stage2" else _stage3
real = module.update_status


def stall(folder, **entries):
    if Path(folder).name == "rec_0" and entries.get(stage if stage == "stage2" else
                                                    "stage3_aligned") not in (None, "running"):
        print("published", flush=True)
        time.sleep(600)
    return real(folder, **entries)


module.update_status = stall
run_session(fast_config(Path({root!r}), sigma_smooth=3.0), progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["stage2", "stage3"])
def test_a_result_published_but_not_recorded_when_killed_is_never_taken_as_done(
    finished_session, finished_copy, stage
) -> None:
    """Settings changed, the run killed between a result's write and its status, the settings
    changed back: the resume must not take the other settings' result for the original's."""
    config, _ = finished_session
    code = STALL_BEFORE_STATUS.format(
        tests=str(Path(__file__).parent), stage=stage, root=str(finished_copy.root)
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "published\n"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()

    run_session(finished_copy, progress=False)  # back to the original settings: resume
    name = "rec_0.tif"
    with (
        np.load(recording_dir(config, config.root / name) / "w_to_reference.npz") as want,
        np.load(
            recording_dir(finished_copy, finished_copy.root / name) / "w_to_reference.npz"
        ) as got,
    ):
        np.testing.assert_array_equal(got["u"], want["u"])
        np.testing.assert_array_equal(got["v"], want["v"])
    with (
        open_video(config.final_dir / f"aligned_{Path(name).stem}.tif") as want,
        open_video(finished_copy.final_dir / f"aligned_{Path(name).stem}.tif") as got,
    ):
        np.testing.assert_array_equal(got[:], want[:])
    with (
        np.load(config.final_dir / "final_valid_idx.npz") as want,
        np.load(finished_copy.final_dir / "final_valid_idx.npz") as got,
    ):
        np.testing.assert_array_equal(got["final_valid"], want["final_valid"])
