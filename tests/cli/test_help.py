"""What ``--help`` and the dry-run summaries tell a new user (issue 18's small traps)."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from labsession.cli import app

from .conftest import run_cli

runner = CliRunner()


def _command_paths(command, path):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, [*path, name])


#: Every command and sub-command, from the app itself (new commands are covered too).
COMMANDS = list(_command_paths(typer.main.get_command(app), []))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "labsession")
def test_flags_do_not_show_a_value_type(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output


def test_every_option_of_every_command_has_help_text():
    group = typer.main.get_command(app)

    def walk(command, path):
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]}: no help"
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])
        yield path

    assert ["labsession", "motion", "run"] in list(walk(group, ["labsession"]))


def test_progress_option_is_explained():
    result = runner.invoke(app, ["motion", "run", "--help"], env={"COLUMNS": "200"})
    (line,) = [row for row in result.output.splitlines() if "--progress" in row]
    assert "--no-progress" in line
    assert "stderr" in line  # says where the bars go


def test_runs_archive_dry_run_says_how_to_run_it_for_real(tmp_path):
    for i in range(2):
        run = tmp_path / "FINISHED_SUCCESS" / f"2026Y-01M-02D-03h04m0{i}s_run{i}"
        run.mkdir(parents=True)
        (run / "result.csv").write_text("a,b\n1,2\n")
    result = run_cli(tmp_path, "runs", "archive", "FINISHED_SUCCESS")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "dry run: nothing archived; run again with --no-dry-run to archive 2 runs"
    )
    assert all(run.is_dir() for run in (tmp_path / "FINISHED_SUCCESS").iterdir())
    real = run_cli(tmp_path, "runs", "archive", "FINISHED_SUCCESS", "--no-dry-run", "-j", "1")
    assert real.returncode == 0, real.stderr
    assert "dry run" not in real.stdout
    assert not any(p.is_dir() for p in (tmp_path / "FINISHED_SUCCESS").iterdir())
    # again: nothing left to do, and the summary says why the runs were skipped
    again = run_cli(tmp_path, "runs", "archive", "FINISHED_SUCCESS")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0] == ("scanned 2, candidates 0, would be archived 0, skipped 0, failed 0"), (
        "archives, not run folders: no candidate"
    )
    assert lines[-1] == "dry run: nothing to archive"
    restore = run_cli(tmp_path, "runs", "restore", "FINISHED_SUCCESS", "--no-dry-run", "-j", "1")
    assert restore.returncode == 0, restore.stderr
    # archives kept beside the restored folders: each folder is checked against its archive
    twice = run_cli(tmp_path, "runs", "archive", "FINISHED_SUCCESS")
    assert twice.stdout.splitlines()[0] == (
        "scanned 4, candidates 2, would be archived 2 (2 resumed: folder left beside its "
        "archive), skipped 0, failed 0"
    )
    done = run_cli(tmp_path, "runs", "archive", "FINISHED_SUCCESS", "--no-dry-run", "-j", "1")
    assert done.returncode == 0, done.stderr
    assert not any(p.is_dir() for p in (tmp_path / "FINISHED_SUCCESS").iterdir())


def test_the_count_option_shows_no_value_type():
    """``-v`` is counted (-vv), it takes no value: the help showed ``-v <int>``, and a user who
    typed ``labsession -v 2 info ...`` got "No such command '2'"."""
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    (line,) = [row for row in result.output.splitlines() if "--verbose" in row]
    assert "<int>" not in line
    assert "(-vv)" in line


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "labsession")
def test_usage_names_arguments_in_capitals(command):
    """The usage line read ``labsession info [OPTIONS] {path}`` (and ``{session}``, ``{out}``)
    beside ``{ROOT}`` and ``{INPUT_FILE}``: every argument is named in capitals, as in the
    CLI reference."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    (usage,) = [row for row in result.output.splitlines() if "Usage:" in row]
    names = re.findall(r"[{\[]([A-Za-z_]+)[}\]]", usage.split("[OPTIONS]", 1)[-1])
    assert all(name == name.upper() for name in names), usage


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "labsession")
def test_help_paragraphs_are_not_broken_at_the_source_s_line_ends(command):
    """typer's rich help kept a docstring's line breaks (after its first paragraph, and in the
    root's command list): in an 80-column terminal each source line ended in a ragged break.
    Each paragraph is one line now (the terminal wraps it); list items stay one per line."""
    click_command = typer.main.get_command(app)
    for name in command:
        click_command = click_command.commands[name]
    for paragraph in (click_command.help or "").split("\n\n"):
        for line in paragraph.splitlines()[1:]:
            assert re.match(r"^(\d+\.|[-*])\s", line), f"{' '.join(command)}: {line!r}"


def test_runs_archive_on_a_script_out_folder_names_the_status_folders(tmp_path):
    """``labsession runs archive fit_out`` (the folder the script made) scanned its status
    folders, found no run directly under it and said only "dry run: nothing to archive"; it now
    names the status folders holding runs, as the command to type."""
    out = tmp_path / "fit_out"
    for i in range(2):
        run = out / "FINISHED_SUCCESS" / f"2026Y-01M-02D-03h04m0{i}s_run{i}"
        run.mkdir(parents=True)
        (run / "result.csv").write_text("a,b\n1,2\n")
    (out / "RUNNING").mkdir()
    result = run_cli(tmp_path, "runs", "archive", "fit_out")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "fit_out holds status folders, not runs: archive acts on the run folders directly under "
        "ROOT; give the status folder, e.g. labsession runs archive fit_out/FINISHED_SUCCESS "
        "(2 runs)"
    )
    real = run_cli(tmp_path, "runs", "archive", "fit_out/FINISHED_SUCCESS", "--no-dry-run")
    assert real.returncode == 0, real.stderr
    restore = run_cli(tmp_path, "runs", "restore", "fit_out")
    assert restore.stdout.splitlines()[-1].endswith(
        "e.g. labsession runs restore fit_out/FINISHED_SUCCESS (2 archives)"
    )
    # where there are runs to act on, nothing more is said
    plain = run_cli(tmp_path, "runs", "restore", "fit_out/FINISHED_SUCCESS")
    assert "status folders" not in plain.stdout


def test_runs_list_on_one_run_folder_says_to_list_its_folder(tmp_path):
    """``labsession runs list fit_out/FINISHED_SUCCESS/<ID>`` said "no runs under ..." of a run;
    it says that ROOT is a run and what to list instead."""
    run = tmp_path / "fit_out" / "FINISHED_SUCCESS" / "2026Y-01M-02D-03h04m05s_abcd"
    (run / "logs").mkdir(parents=True)
    result = run_cli(
        tmp_path, "runs", "list", "fit_out/FINISHED_SUCCESS/2026Y-01M-02D-03h04m05s_abcd"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "no runs under fit_out/FINISHED_SUCCESS/2026Y-01M-02D-03h04m05s_abcd: it is a run folder "
        "itself; list its folder: labsession runs list fit_out/FINISHED_SUCCESS"
    )
    logs = run_cli(tmp_path, "runs", "list", str(run / "logs"))
    assert logs.stdout.strip() == f"no runs under {run / 'logs'}"  # nothing more to say there
