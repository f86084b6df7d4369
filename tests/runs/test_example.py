"""The user-guide example runs as documented, twice, and the second run verifies the first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from labsession.runs import is_run_id

from .conftest import run_script, write_script

EXAMPLE = Path(__file__).parents[2] / "examples" / "reproducible_script.py"


def test_example_script_runs_and_reproduces(tmp_path):
    script = tmp_path / EXAMPLE.name
    shutil.copy(EXAMPLE, script)
    first = run_script(script, "--n-samples", "50", "--noise", "0.1")
    assert first.returncode == 0, first.stderr
    second = run_script(script, "--n-samples", "50", "--noise", "0.1")
    assert second.returncode == 0, second.stderr
    assert "matches" in second.stderr  # rngg.verify compared with the first run
    assert first.stdout.splitlines()[-1] == second.stdout.splitlines()[-1]  # same fit
    # New arguments: compared with no earlier run, the run records its own reference.
    third = run_script(script, "--n-samples", "50", "--noise", "0.1", "--no-plot")
    assert third.returncode == 0, third.stderr
    assert "matches" not in third.stderr
    finished = tmp_path / "reproducible_script_out" / "FINISHED_SUCCESS"
    runs = [p for p in finished.iterdir() if is_run_id(p.name)]
    assert len(runs) == 3
    plotted = [run for run in runs if (run / "fit.png").is_file()]
    assert len(plotted) == 2
    (unplotted,) = set(runs) - set(plotted)
    for run in plotted:
        assert (run / "samples.csv").read_text() == (unplotted / "samples.csv").read_text()
    config = json.loads((unplotted / "CONFIGS" / "CONFIG.json").read_text())
    assert config["ARGS"] == {"n_samples": 50, "noise": 0.1, "slope": 2.0, "plot": False}


def test_changed_data_fails_the_verification(tmp_path):
    script = tmp_path / EXAMPLE.name
    shutil.copy(EXAMPLE, script)
    assert run_script(script, "--n-samples", "20", "--no-plot").returncode == 0
    changed = write_script(
        tmp_path, EXAMPLE.name, script.read_text().replace("slope * x +", "slope * x * 1.001 +")
    )
    failed = run_script(changed, "--n-samples", "20", "--no-plot")
    assert failed.returncode == 1
    assert "ReproducibilityError: array 'y' differs" in failed.stderr
    assert len(list((tmp_path / "reproducible_script_out" / "FINISHED_ERROR").iterdir())) == 1
