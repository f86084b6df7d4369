"""``labsession motion compensate`` options as the motion pages name them."""

from __future__ import annotations

import pytest
import typer

from labsession.cli.motion import _check_backend


@pytest.mark.parametrize(
    ("given", "runs"),
    [("torch", "flowreg_torch"), ("Torch", "flowreg_torch"), ("flowreg_cuda", "flowreg_cuda")],
)
def test_backend_takes_the_names_the_options_take(given, runs):
    """docs/motion.md: "flowreg_torch (alias torch)", and OFOptions(flow_backend="torch") runs;
    ``--backend torch`` was refused ("'torch' is not one of 'diso', 'flowreg', ...")."""
    assert _check_backend(given) == runs


def test_an_unknown_backend_is_refused_naming_the_known_ones():
    with pytest.raises(typer.BadParameter, match="'gpu' is not one of 'diso', 'flowreg'"):
        _check_backend("gpu")


def test_array_outside_an_array_job_says_what_to_run_instead(tmp_path):
    """``motion run --stage 1 --array`` outside an array job said "... run_stage1_array runs
    inside an array job ...; outside one, use run_stage1 or scheduler='local'" (Python names,
    and the found variables as a dict of Nones); it says what to type instead."""
    from typer.testing import CliRunner

    from labsession.cli import app

    config = tmp_path / "session.toml"
    config.write_text('root = "."\n')
    unset = {"SLURM_ARRAY_TASK_ID": None, "SGE_TASK_ID": None, "PBS_ARRAY_INDEX": None}
    result = CliRunner().invoke(
        app, ["motion", "run", "--config", str(config), "--stage", "1", "--array"], env=unset
    )
    assert result.exit_code == 1, result.output
    (line,) = result.output.splitlines()
    assert line.startswith("error: --array runs inside an array job (sbatch --array=1-N")
    assert f"`labsession motion run --config {config} --stage 1` runs every recording" in line
    assert "run_stage1" not in line.replace("motion run", "")
    assert "None" not in line
