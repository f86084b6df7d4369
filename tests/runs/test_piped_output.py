"""Library calls keep a piped stdout clean; the CLI never wraps a path when piped."""

from __future__ import annotations

import os
import subprocess
import sys

from labsession.runs import is_run_id

from .conftest import make_run_dirs

ARCHIVE = """
import sys
from labsession.runs import archive_existing
summary = archive_existing(sys.argv[1], dry_run=False, jobs=1{extra})
print("archived", summary["archived"])
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        env.pop(name, None)  # rich would treat a pipe as a terminal, or narrow its width
    return env


def _archive(root, extra="", **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ARCHIVE.format(extra=extra), str(root)],
        env=_env(),
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def _archives(root):
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".tar.gz"))


def test_archive_existing_prints_nothing_into_a_piped_stdout(tmp_path):
    runs = make_run_dirs(tmp_path, 4)
    done = _archive(tmp_path, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "archived 4\n"  # only what the script printed
    assert "archiving" not in done.stderr  # stderr is not a terminal: no bar there either
    assert _archives(tmp_path) == [f"{r.name}.tar.gz" for r in runs]


def test_progress_true_draws_on_stderr_only(tmp_path):
    make_run_dirs(tmp_path, 3)
    done = _archive(tmp_path, extra=", progress=True", capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "archived 3\n"
    assert "archiving" in done.stderr
    assert "3/3" in done.stderr


def test_bar_is_shown_when_stderr_is_a_terminal(tmp_path, pseudo_terminal):
    make_run_dirs(tmp_path, 3)
    done = _archive(tmp_path, stdout=subprocess.PIPE, stderr=pseudo_terminal.fd)
    terminal = pseudo_terminal.output()
    assert done.returncode == 0
    assert done.stdout == "archived 3\n"  # the bar went to the terminal, not into the pipe
    assert "archiving" in terminal
    assert "3/3" in terminal


def test_runs_list_keeps_each_long_path_on_one_line(tmp_path):
    deep = tmp_path.joinpath("a" * 70, "b" * 70, "c" * 70, "fit_out")
    finished = deep / "FINISHED_SUCCESS"
    finished.mkdir(parents=True)
    runs = make_run_dirs(finished, 2)
    assert all(len(str(r)) > 250 for r in runs)
    done = subprocess.run(
        [sys.executable, "-m", "labsession", "runs", "list", str(deep)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for run in runs:
        (row,) = [line for line in lines if run.name in line]
        assert str(run) in row  # the whole path on the run's own line
    assert "\x1b[" not in done.stdout  # no colour codes in a pipe
    assert all(is_run_id(r.name) for r in runs)


def test_archive_summary_keeps_a_long_failing_path_on_one_line(tmp_path):
    root = tmp_path.joinpath("d" * 90, "e" * 90, "FINISHED_SUCCESS")
    root.mkdir(parents=True)
    (bad,) = make_run_dirs(root, 1)
    (bad / "link").symlink_to("/etc/hostname")  # a link the archiver refuses
    done = subprocess.run(
        [sys.executable, "-m", "labsession", "runs", "archive", str(root), "--no-dry-run"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("failed ")]
    assert str(bad) in line
