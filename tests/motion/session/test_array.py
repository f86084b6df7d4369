"""HPC array jobs: the task index from SLURM, SGE or PBS, and one recording per task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labsession.errors import MotionSessionError
from labsession.motion.session import (
    get_array_task_id,
    recording_dir,
    run_stage1,
    run_stage1_array,
)

from .conftest import fast_config

_VARS = ("SLURM_ARRAY_TASK_ID", "SGE_TASK_ID", "PBS_ARRAY_INDEX")


@pytest.mark.parametrize("name", _VARS)
def test_each_scheduler_variable_is_read(name: str) -> None:
    assert get_array_task_id({name: "3"}) == 3


def test_slurm_wins_and_sge_undefined_counts_as_unset() -> None:
    assert get_array_task_id({"SGE_TASK_ID": "2", "SLURM_ARRAY_TASK_ID": "5"}) == 5
    assert get_array_task_id({"SGE_TASK_ID": "undefined", "PBS_ARRAY_INDEX": "4"}) == 4


def test_outside_an_array_job_the_task_id_is_none_as_in_pyflowreg() -> None:
    assert get_array_task_id({}) is None
    assert get_array_task_id({"SGE_TASK_ID": "undefined", "SLURM_ARRAY_TASK_ID": " "}) is None


def test_run_stage1_array_outside_an_array_job_explains_what_was_looked_for(
    fresh_copy: Path,
) -> None:
    config = fast_config(fresh_copy, scheduler="array")
    with pytest.raises(MotionSessionError) as info:
        run_stage1_array(config, environ={"SGE_TASK_ID": "undefined"})
    message = str(info.value)
    for name in _VARS:
        assert name in message
    assert "sbatch --array=1-N" in message
    assert not config.output_dir.exists()  # nothing started


@pytest.mark.parametrize(("value", "match"), [("two", "not an integer"), ("0", "1-based")])
def test_bad_values_are_named(value: str, match: str) -> None:
    with pytest.raises(MotionSessionError, match=f"SLURM_ARRAY_TASK_ID.*{match}"):
        get_array_task_id({"SLURM_ARRAY_TASK_ID": value})


def test_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PBS_ARRAY_INDEX", "7")
    assert get_array_task_id() == 7


def test_array_task_processes_only_its_recording(
    fresh_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    config = fast_config(fresh_copy, scheduler="array")
    folders = run_stage1(config, progress=False)  # scheduler="array" -> this task only
    assert folders == [recording_dir(config, fresh_copy / "rec_1.tif")]
    assert json.loads((folders[0] / "status.json").read_text())["stage1"] == "done"
    assert not recording_dir(config, fresh_copy / "rec_0.tif").exists()
    assert not recording_dir(config, fresh_copy / "rec_2.tif").exists()
    # each task of the array, in any order
    for task in (3, 1):
        run_stage1_array(config, task_id=task)
    assert all(
        json.loads((recording_dir(config, p) / "status.json").read_text())["stage1"] == "done"
        for p in sorted(fresh_copy.glob("*.tif"))
    )


def test_out_of_range_task_explains_the_array_size(fresh_copy: Path) -> None:
    config = fast_config(fresh_copy, scheduler="array")
    with pytest.raises(MotionSessionError, match=r"array task 4 is out of range: 3 recording") as e:
        run_stage1_array(config, environ={"SGE_TASK_ID": "4"})
    assert "--array=1-3" in str(e.value)
    with pytest.raises(MotionSessionError, match="no array task index"):
        run_stage1_array(config, environ={})


def test_array_scheduler_refuses_all_stages_in_one_call(fresh_copy: Path) -> None:
    from labsession.motion.session import run_session

    config = fast_config(fresh_copy, scheduler="array")
    with pytest.raises(MotionSessionError, match="stages 2-3 run in one job after the whole"):
        run_session(config, progress=False)
