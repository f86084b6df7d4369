from __future__ import annotations

import json

from typer.testing import CliRunner

from labsession.cli import app

from .conftest import make_run_dirs

runner = CliRunner()


def test_list_archive_restore(tmp_path):
    finished = tmp_path / "fit_out" / "FINISHED_SUCCESS"
    finished.mkdir(parents=True)
    runs = make_run_dirs(finished, 3)

    listed = runner.invoke(app, ["runs", "list", str(tmp_path / "fit_out"), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [r["session_id"] for r in rows] == [r.name for r in runs]
    assert {r["status"] for r in rows} == {"success"}

    dry = runner.invoke(app, ["runs", "archive", str(finished)])
    assert dry.exit_code == 0, dry.output
    assert "would be archived 3" in dry.output
    assert all(r.is_dir() for r in runs)

    done = runner.invoke(
        app, ["runs", "archive", str(finished), "--no-dry-run", "--jobs", "1", "--bytes"]
    )
    assert done.exit_code == 0, done.output
    assert "archived 3" in done.output
    assert not any(r.exists() for r in runs)

    table = runner.invoke(app, ["runs", "list", str(finished)])
    assert table.exit_code == 0
    assert "yes" in table.output  # the archived column

    too_small = ["runs", "restore", str(finished), "--no-dry-run", "-j", "1", "--max-bytes", "100"]
    refused = runner.invoke(app, too_small)
    assert refused.exit_code == 1, refused.output
    assert "failed 3" in refused.output
    assert "--max-bytes on the command line" in refused.output  # how to allow more, here
    assert not any(r.exists() for r in runs)  # nothing half-restored

    back = runner.invoke(app, ["runs", "restore", str(finished), "--no-dry-run", "--jobs", "1"])
    assert back.exit_code == 0, back.output
    assert "restored 3" in back.output
    assert all(r.is_dir() for r in runs)


def test_failure_gives_exit_code_1_and_names_the_run(tmp_path):
    (bad,) = make_run_dirs(tmp_path, 1)
    (bad / "link").symlink_to("/etc/hostname")
    result = runner.invoke(app, ["runs", "archive", str(tmp_path), "--no-dry-run", "-j", "1"])
    assert result.exit_code == 1
    assert bad.name in result.output
    assert "failed 1" in result.output


def test_missing_root_exit_code_2(tmp_path):
    result = runner.invoke(app, ["runs", "list", str(tmp_path / "nope")])
    assert result.exit_code == 2
