"""Stage 1 shows the frames of each recording, not only the recording count."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from labsession.motion.session import SessionConfig
from labsession.motion.session._discover import discover_recordings
from labsession.motion.session._executors import LocalExecutor, Outcome, SessionExecutor
from labsession.motion.session._stage1 import compensate_one
from labsession.motion.session._stage1_progress import Stage1Progress

from .conftest import N_FRAMES, fast_config, fast_config_text

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        env.pop(name, None)
    return env


def _run_with_terminal_stderr(command: list[str], cwd: Path, terminal) -> tuple[int, str, str]:
    """Run ``command`` with stdout piped and stderr on a pseudo-terminal: (rc, stdout, tty)."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=terminal.fd,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout, ANSI.sub("", terminal.output())


def test_compensate_one_reports_frames_after_each_buffer(fresh_copy: Path) -> None:
    config = fast_config(fresh_copy)  # buffer_size 16
    path = discover_recordings(config)[0]
    calls: list[tuple[str, int, int]] = []
    result = compensate_one(config, path, lambda *call: calls.append(call))
    assert result["state"] == "done"
    assert calls == [(str(path), 0, N_FRAMES), (str(path), 16, N_FRAMES), (str(path), 24, 24)]


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "process-pool"])
def test_motion_run_shows_recordings_and_frames_on_a_terminal(
    fresh_copy: Path, workers: int, pseudo_terminal
) -> None:
    config = fresh_copy.parent / "session.toml"
    config.write_text(fast_config_text(n_workers=str(workers)))
    command = [sys.executable, "-m", "labsession", "motion", "run", "-c", str(config), "-s", "1"]
    rc, stdout, terminal = _run_with_terminal_stderr(command, fresh_copy.parent, pseudo_terminal)
    assert rc == 0, terminal
    assert stdout == f"stage(s) 1 done for {fresh_copy}\n"  # bars and logs stay off stdout
    assert "stage 1: motion correction" in terminal
    assert "3/3 recordings" in terminal
    for name in ("rec_0.tif", "rec_1.tif", "rec_2.tif"):  # a frames line for each recording
        assert re.search(rf"{name}\s.*\b0/{N_FRAMES}\s+frames", terminal), terminal


def test_library_run_prints_nothing_when_nothing_is_a_terminal(fresh_copy: Path) -> None:
    script = (
        "import sys\n"
        "from labsession.motion.session import SessionConfig, run_stage1\n"
        "folders = run_stage1(SessionConfig.from_file(sys.argv[1]))\n"
        "print(len(folders))\n"
    )
    config = fresh_copy.parent / "session.toml"
    config.write_text(fast_config_text())
    done = subprocess.run(
        [sys.executable, "-c", script, str(config)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "3\n"
    assert "motion correction" not in done.stderr
    assert "frames" not in done.stderr


class _Serial(SessionExecutor):
    """An executor of the caller's own: stage 1 cannot know where its tasks run."""

    def map_unordered(
        self, fn: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> Iterator[Outcome]:
        for index, args in enumerate(arguments):
            yield index, fn(*args), None


def test_other_executors_count_recordings_only(fresh_copy: Path) -> None:
    config: SessionConfig = fast_config(fresh_copy)
    files = discover_recordings(config)
    with Stage1Progress(files, _Serial(), progress=True) as bar:
        assert bar.mode == "recordings"
        assert bar.reporter is None
        for index, _result, error in _Serial().map_unordered(
            compensate_one, [(config, path, bar.reporter) for path in files]
        ):
            assert error is None
            bar.recording_done(index)
    assert bar.frames_seen == {}
    with Stage1Progress(files, LocalExecutor(4), progress=False) as hidden:
        assert hidden.mode == "recordings"  # no bar: no manager process, no reports
        assert hidden.reporter is None
    with Stage1Progress(files, LocalExecutor(1), progress=True) as inline:
        assert inline.mode == "inline"
        inline.reporter(str(files[0]), 8, N_FRAMES)
        inline.recording_done(0)
        inline.reporter(str(files[0]), 24, N_FRAMES)  # late: ignored by the display
    assert inline.frames_seen == {str(files[0]): 24}
