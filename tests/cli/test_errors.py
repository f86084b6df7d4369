"""The CLI error contract (issue 18): one ``error:`` line on stderr, exit 2 for a mistake in the
options (with nothing written), exit 1 for a runtime failure, a traceback only with ``--debug``.

Every case runs ``python -m labsession`` in a real subprocess in an empty folder.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .conftest import run_cli, tree

#: (argv, the option named in the message, the value as the message shows it). Paths under
#: ``inputs/`` exist (see ``workdir``); nothing else does.
MISTAKES = [
    (["record", "--cycle", "-1"], "'--cycle'", "-1.0"),
    (["record", "--repeats", "0"], "'--repeats'", "0"),
    (["record", "--classes", ""], "'--classes'", "''"),
    (["record", "--classes", "Rest,Fist,Rest"], "'--classes'", "'Rest,Fist,Rest'"),
    (["record", "--classes", "Rest,,Fist"], "'--classes'", "'Rest,,Fist'"),
    (["record", "--fs", "-5"], "'--fs'", "-5.0"),
    (["record", "--channels", "0"], "'--channels'", "0"),
    (["record", "--source", "lsl:"], "'--source'", "'lsl:'"),
    (["record", "--source", "synthetic", "--source", "lsl:amp=emg"], "'--source'", "'emg'"),
    (["record", "--connect-timeout", "0"], "'--connect-timeout'", "0.0"),
    (["record", "--out", "inputs/raw.npy"], "'--out'", "inputs/raw.npy"),
    # the sessions' folder takes either name on both commands
    (["record", "--base-path", "inputs/raw.npy"], "'--base-path'", "inputs/raw.npy"),
    (["gui", "--out", "inputs/raw.npy"], "'--out'", "inputs/raw.npy"),
    (["synth", "--duration", "-1"], "'--duration'", "-1.0"),
    (["synth", "--seed", "-3"], "'--seed'", "-3"),
    (["demo", "--cycle", "0"], "'--cycle'", "0.0"),
    (["demo", "--replay-speed", "0"], "'--replay-speed'", "0.0"),
    (["gui", "--classes", "Rest"], "'--classes'", "'Rest'"),
    (["gui", "--fs", "0"], "'--fs'", "0.0"),
    (["motion", "compensate", "inputs/raw.npy", "-q", "best"], "'--quality'", "'best'"),
    (["motion", "compensate", "inputs/raw.npy", "--buffer-size", "0"], "'--buffer-size'", "0"),
    (["motion", "compensate", "inputs/none.tif"], "'INPUT_FILE'", "inputs/none.tif"),
    (["motion", "run", "-c", "inputs/session.toml", "--stage", "4"], "'--stage'", "4"),
    (
        ["motion", "run", "-c", "inputs/session.toml", "--of-params", "alpha"],
        "'--of-params'",
        "'alpha'",
    ),
    (["motion", "status", "-c", "inputs/none.toml"], "'--config'", "inputs/none.toml"),
    (
        ["motion", "submit", "-c", "inputs/session.toml", "--slurm", "--time", "soon"],
        "'--time'",
        "'soon'",
    ),
    (["motion", "submit", "-c", "inputs/session.toml"], "'--slurm'", ""),
    (["runs", "list", "inputs/none"], "'ROOT'", "inputs/none"),
    (["runs", "archive", "inputs", "--format", "zip"], "'--format'", "'zip'"),
    (["runs", "archive", "inputs", "--jobs", "0"], "'--jobs'", "0"),
    (["runs", "restore", "inputs", "--max-bytes", "0"], "'--max-bytes'", "0"),
]


@pytest.fixture
def workdir(tmp_path):
    """An empty working folder beside ``inputs/`` (a file, a config) the mistakes point at."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "raw.npy").write_bytes(b"not read: the options are refused first")
    (inputs / "session.toml").write_text("not read either\n")
    return tmp_path


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize(("argv", "option", "value"), MISTAKES, ids=" ".join)
def test_a_mistake_is_one_line_exit_2_and_nothing_written(workdir, argv, option, value):
    before = tree(workdir)
    result = run_cli(workdir, *argv)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert option in line
    assert value in line
    assert result.stdout == ""
    assert tree(workdir) == before


def test_demo_says_why_it_needs_two_repeats(tmp_path):
    result = run_cli(tmp_path, "demo", "--repeats", "1")
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "'--repeats': 1 is not in the range x>=2" in line
    assert "cross-validat" in line  # what scikit-learn's k-fold would have failed on
    assert tree(tmp_path) == []


def test_mistakes_under_debug_stay_one_line(tmp_path):
    result = run_cli(tmp_path, "--debug", "record", "--cycle", "-1")
    assert result.returncode == 2
    assert one_error_line(result.stderr) == (
        "error: Invalid value for '--cycle': -1.0 is not in the range x>0."
    )


def test_unknown_option_and_command_are_usage_errors(tmp_path):
    option = run_cli(tmp_path, "record", "--nope")
    assert option.returncode == 2
    assert "--nope" in one_error_line(option.stderr)
    command = run_cli(tmp_path, "recrod")
    assert command.returncode == 2
    assert "'recrod'" in one_error_line(command.stderr)


def test_no_arguments_still_prints_the_help(tmp_path):
    result = run_cli(tmp_path)
    assert result.returncode == 2
    assert "Usage" in result.stdout
    assert "record" in result.stdout
    assert "error" not in result.stderr


def test_info_on_a_missing_or_corrupt_session_is_one_line_exit_1(tmp_path):
    missing = run_cli(tmp_path, "info", "nope.session.zip")
    assert missing.returncode == 1
    assert "nope.session.zip" in one_error_line(missing.stderr)
    (tmp_path / "bad.session.zip").write_bytes(b"PK\x03\x04 not really a zip")
    corrupt = run_cli(tmp_path, "info", "bad.session.zip")
    assert corrupt.returncode == 1
    line = one_error_line(corrupt.stderr)
    assert "bad.session.zip" in line
    debug = run_cli(tmp_path, "info", "bad.session.zip", env={"LABSESSION_DEBUG": "1"})
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == line


def test_debug_shows_the_traceback_of_a_runtime_failure(tmp_path):
    import numpy as np

    np.save(tmp_path / "raw.npy", np.ones((3, 16, 16), np.float32))
    (tmp_path / "bad.toml").write_text("alfa = 2.0\n")
    argv = ["motion", "compensate", "raw.npy", "-c", "bad.toml"]
    plain = run_cli(tmp_path, *argv)
    assert plain.returncode == 1
    line = one_error_line(plain.stderr)
    assert "bad.toml" in line
    assert "'alfa'" in line
    debug = run_cli(tmp_path, "--debug", *argv)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last)")
    assert "ConfigError" in debug.stderr
    assert debug.stderr.splitlines()[-1] == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "raw.npy"]


GROUP_SCRIPT = textwrap.dedent(
    """
    import sys
    import typer
    from labsession.cli._errors import LabsessionGroup

    app = typer.Typer(cls=LabsessionGroup)

    @app.callback()
    def root(ctx: typer.Context, debug: bool = False):
        from labsession.cli._errors import set_debug
        set_debug(ctx, debug)

    @app.command()
    def fail(kind: str):
        if kind == "bug":
            raise RuntimeError("no such\\nkey")
        if kind == "oserror":
            open("/nonexistent/labsession-file")
        if kind == "ctrl-c":
            raise KeyboardInterrupt
        if kind == "exit":
            raise typer.Exit(3)
        if kind == "value":
            raise ValueError("first line\\n  second line")

    app()
    """
)


@pytest.mark.parametrize(
    ("kind", "code", "line"),
    [
        ("bug", 1, "error: RuntimeError: no such key (run with --debug for the traceback)"),
        ("oserror", 1, "error: /nonexistent/labsession-file: No such file or directory"),
        ("ctrl-c", 130, "error: interrupted"),
        ("value", 1, "error: first line second line"),
    ],
)
def test_the_root_group_maps_each_failure_to_one_line(tmp_path, kind, code, line):
    result = subprocess.run(
        [sys.executable, "-c", GROUP_SCRIPT, "fail", kind],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == code
    assert result.stderr.splitlines() == [line]


def test_typer_exit_keeps_its_code_and_debug_adds_the_traceback(tmp_path):
    def run(*args):
        argv = [sys.executable, "-c", GROUP_SCRIPT, *args]
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    exited = run("fail", "exit")
    assert (exited.returncode, exited.stderr) == (3, "")
    bug = run("--debug", "fail", "bug")
    assert bug.returncode == 1
    assert "Traceback (most recent call last)" in bug.stderr
    assert bug.stderr.splitlines()[-1] == "error: RuntimeError: no such key"
