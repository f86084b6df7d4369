"""``labsession motion run | status | submit`` through typer's CliRunner."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from labsession.cli._errors import LabsessionGroup
from labsession.cli._motion_session import parse_of_params, register

from .conftest import OFFSETS, fast_config_text


@pytest.fixture
def app() -> typer.Typer:
    motion = typer.Typer(cls=LabsessionGroup)  # the root's error contract: one line, codes 2/1
    register(motion)
    return motion


@pytest.fixture
def config_file(fresh_copy: Path) -> Path:
    path = fresh_copy.parent / "session.toml"
    path.write_text(fast_config_text())
    return path


def test_parse_of_params() -> None:
    assert parse_of_params(["alpha=4", "levels=50", "quality_setting=fast", "weight=[1, 0]"]) == {
        "alpha": 4,
        "levels": 50,
        "quality_setting": "fast",
        "weight": [1, 0],
    }
    with pytest.raises(typer.BadParameter, match="key=value"):
        parse_of_params(["alpha"])


def test_run_all_stages_then_status(app: typer.Typer, config_file: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["run", "--config", str(config_file), "--no-progress", "--of-params", "alpha=2"]
    )
    assert result.exit_code == 0, result.output
    assert "stage(s) 1, 2, 3 done" in result.output
    assert "final valid mask:" in result.output
    assert "shift to rec_1.tif (median of its field, px):" in result.output
    shifts = {}
    for line in result.output.splitlines():
        if line.startswith("  rec_") and ": u " in line:  # "  rec_0.tif: u -1.50, v +1.00"
            name, rest = line.strip().split(": ", 1)
            shifts[name] = [float(part.split()[1]) for part in rest.split(", ")]
    assert shifts.keys() == {"rec_0.tif", "rec_1.tif", "rec_2.tif"}
    for idx, offset in enumerate(OFFSETS):  # the synthetic recordings' known offsets
        truth = [offset[0] - OFFSETS[1][0], offset[1] - OFFSETS[1][1]]
        assert max(abs(a - b) for a, b in zip(shifts[f"rec_{idx}.tif"], truth, strict=True)) < 0.2
    options = json.loads(
        (config_file.parent / "data/compensated_outputs/rec_0/options.json").read_text()
    )
    assert options["alpha"] == [2.0, 2.0]  # --of-params reached stage 1
    status = runner.invoke(app, ["status", "--config", str(config_file), "--of-params", "alpha=2"])
    assert status.exit_code == 0, status.output
    assert "rec_1.tif (center)" in status.output
    assert status.output.count("done") >= 9
    as_json = runner.invoke(
        app, ["status", "--config", str(config_file), "--json", "--of-params", "alpha=2"]
    )
    assert '"stage3": "done"' in as_json.output
    # without the override, stage 1 was run with other options than the file's: not done
    plain = json.loads(
        runner.invoke(app, ["status", "--config", str(config_file), "--json"]).output
    )
    assert {r["stage1"] for r in plain["recordings"]} == {
        "incomplete: the stage-1 options changed since it ran: alpha"
    }


def test_run_one_stage_and_errors(app: typer.Typer, config_file: Path) -> None:
    runner = CliRunner()
    early = runner.invoke(app, ["run", "--config", str(config_file), "--stage", "2"])
    assert early.exit_code == 1  # a runtime failure
    assert "stage 1 is not done" in early.output
    status = runner.invoke(app, ["status", "--config", str(config_file)])
    assert "pending" in status.output
    bad = runner.invoke(
        app, ["run", "--config", str(config_file), "--stage", "1", "--of-params", "bogus=1"]
    )
    assert bad.exit_code == 2  # refused while parsing the options
    assert "bogus" in bad.output
    no_task = runner.invoke(
        app,
        ["run", "--config", str(config_file), "--stage", "1", "--array"],
        env={"SLURM_ARRAY_TASK_ID": "", "SGE_TASK_ID": "", "PBS_ARRAY_INDEX": ""},
    )
    assert no_task.exit_code == 1
    assert "--array runs inside an array job" in no_task.output
    task = runner.invoke(
        app,
        ["run", "--config", str(config_file), "--stage", "1", "--array"],
        env={"SLURM_ARRAY_TASK_ID": "3"},
    )
    assert task.exit_code == 0, task.output
    assert task.output.strip().endswith("rec_2")
    out_of_range = runner.invoke(app, ["run", "--config", str(config_file), "--stage", "4"])
    assert out_of_range.exit_code == 2


def test_submit_writes_and_submits_slurm_scripts(
    app: typer.Typer, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    refused = runner.invoke(app, ["submit", "--config", str(config_file)])
    assert refused.exit_code == 2
    assert "--slurm" in refused.output
    written = runner.invoke(app, ["submit", "--config", str(config_file), "--slurm"])
    assert written.exit_code == 0, written.output
    slurm = config_file.parent / "data/compensated_outputs/slurm"
    stage1 = (slurm / "stage1.sbatch").read_text()
    assert "#SBATCH --array=1-3" in stage1
    # chmod +x as the shell does: executable wherever readable, never wider than the umask
    umask = os.umask(0)
    os.umask(umask)
    created = 0o666 & ~umask
    modes = {(slurm / f).stat().st_mode & 0o777 for f in ("stage1.sbatch", "stage23.sbatch")}
    assert modes == {created | (created & 0o444) >> 2}, modes
    assert "motion run --config" in stage1
    assert "--stage 1 --array" in stage1
    stage23 = (slurm / "stage23.sbatch").read_text()
    assert "--stage 2" in stage23
    assert "--stage 3" in stage23
    assert "sbatch --dependency=afterok:$jid" in written.output

    # a fake sbatch on PATH records its arguments and prints job ids
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "sbatch"
    fake.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\nn=$(wc -l < {calls})\necho "$((1000 + n));cluster"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    submitted = runner.invoke(
        app, ["submit", "--config", str(config_file), "--slurm", "--run", "--time", "01:00:00"]
    )
    assert submitted.exit_code == 0, submitted.output
    assert "array job 1001; stages 2-3 job 1002" in submitted.output
    lines = calls.read_text().splitlines()
    assert lines[0] == f"--parsable {slurm / 'stage1.sbatch'}"
    assert lines[1] == f"--parsable --dependency=afterok:1001 {slurm / 'stage23.sbatch'}"
    assert "#SBATCH --time=01:00:00" in (slurm / "stage1.sbatch").read_text()


def test_submit_run_without_sbatch_says_so(
    app: typer.Typer, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(app, ["submit", "--config", str(config_file), "--slurm", "--run"])
    assert result.exit_code == 1
    assert "sbatch was not found on PATH" in result.output
