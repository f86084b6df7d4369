"""``runs list`` and ``scan_runs`` given the folder above ``<script>_out/``: the runs inside."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from labsession.runs import SessionManager
from labsession.runs._manager import MAX_SCAN_DEPTH, scan_runs


def _run_dir(folder, name, **config):
    run = folder / name
    (run / "CONFIGS").mkdir(parents=True)
    (run / "CONFIGS" / "CONFIG.json").write_text(json.dumps(config))
    return run


def _project(tmp_path):
    """``project/`` holding two scripts' output folders, one nested a level deeper."""
    project = tmp_path / "project"
    _run_dir(
        project / "fit_out" / "FINISHED_SUCCESS", "2026Y-01M-01D-00h00m01s_fitA", EXIT_STATUS=0
    )
    _run_dir(project / "fit_out" / "FINISHED_ERROR", "2026Y-01M-01D-00h00m02s_fitB", EXIT_STATUS=1)
    plots = project / "analysis" / "plot_out" / "FINISHED_SUCCESS"
    _run_dir(plots, "2026Y-01M-01D-00h00m03s_plot", EXIT_STATUS=0)
    (plots / "2026Y-01M-01D-00h00m00s_arch.tar.gz").write_bytes(b"x")
    (project / "notes.txt").write_text("not a run")
    (project / ".hidden_out" / "FINISHED_SUCCESS").mkdir(parents=True)
    _run_dir(project / ".hidden_out" / "FINISHED_SUCCESS", "2026Y-01M-01D-00h00m09s_hide")
    return project


def _labsession(*args, cwd):
    argv = [sys.executable, "-m", "labsession", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_scan_finds_the_runs_of_every_output_folder_below(tmp_path):
    project = _project(tmp_path)
    records = {r.session_id[-4:]: r for r in scan_runs(project)}
    assert {k: r.status for k, r in records.items()} == {
        "arch": "success",
        "fitA": "success",
        "fitB": "error",
        "plot": "success",
    }
    assert records["plot"].path.parent.parent.name == "plot_out"
    assert records["arch"].archived
    assert list(SessionManager().list_sessions(tmp_path)) == sorted(
        r.session_id for r in records.values()
    )
    # an output folder given directly still lists only its own runs
    assert {r.session_id[-4:] for r in scan_runs(project / "fit_out")} == {"fitA", "fitB"}


def test_scan_looks_only_so_deep(tmp_path):
    deep = tmp_path
    for level in range(MAX_SCAN_DEPTH):
        deep = deep / f"level{level}"
    _run_dir(deep / "x_out" / "FINISHED_SUCCESS", "2026Y-01M-01D-00h00m01s_deep")
    assert scan_runs(tmp_path) == []
    assert [r.session_id for r in scan_runs(tmp_path / "level0")] == [
        "2026Y-01M-01D-00h00m01s_deep"
    ]


def test_runs_list_of_the_folder_above_the_output_folders(tmp_path):
    project = _project(tmp_path)
    result = _labsession("runs", "list", project, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["session_id"][-4:] for row in rows] == ["arch", "fitA", "fitB", "plot"]
    table = _labsession("runs", "list", project, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    for sid in ("2026Y-01M-01D-00h00m01s_fitA", "2026Y-01M-01D-00h00m03s_plot"):
        assert sid in table.stdout
    assert "not a session" not in table.stdout + table.stderr


def test_runs_list_of_a_folder_without_runs_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    (empty / "data" / "table.csv").write_text("1,2\n")
    result = _labsession("runs", "list", empty, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [f"no runs under {empty}"]
    assert result.stderr == ""


def test_a_run_whose_config_is_a_named_pipe_is_listed_without_reading_it(tmp_path):
    """Reading a FIFO's CONFIG.json blocked `runs list` for good: it is listed as unknown."""
    root = tmp_path / "fit_out" / "FINISHED_SUCCESS"
    _run_dir(root, "2026Y-01M-01D-00h00m01s_fitA", EXIT_STATUS=0)
    piped = root / "2026Y-01M-01D-00h00m02s_fitB" / "CONFIGS"
    piped.mkdir(parents=True)
    os.mkfifo(piped / "CONFIG.json")
    result = _labsession("runs", "list", tmp_path / "fit_out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fitA" in result.stdout
    assert "fitB" in result.stdout
