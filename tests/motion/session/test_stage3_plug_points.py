"""Stage 3 uses a registered executor, and clears the Zarr temporaries a killed writer left."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from labsession.motion import open_video
from labsession.motion.session import SessionExecutor, _executors, register_executor, run_stage3
from labsession.motion.session._resume import clean_partial_files
from labsession.motion.session._stage3 import aligned_video_path

from .conftest import N_FRAMES, SHAPE, fast_config


class RecordingExecutor(SessionExecutor):
    """Runs tasks in-process, last first; records each call and whether it was closed."""

    made: ClassVar[list[RecordingExecutor]] = []

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Path]]] = []
        self.closed = False
        RecordingExecutor.made.append(self)

    def map_unordered(
        self, fn: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        self.calls.append((fn.__name__, [Path(args[1]) for args in arguments]))
        for index in reversed(range(len(arguments))):
            yield index, fn(*arguments[index]), None

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The executor registry, restored after the test."""
    monkeypatch.setattr(_executors, "_REGISTRY", dict(_executors._REGISTRY))
    RecordingExecutor.made.clear()


def _aligned(config) -> list[Path]:
    return [aligned_video_path(config, p) for p in sorted(config.root.glob("*.tif"))]


@pytest.mark.parametrize("name", ["recorder", "local"])
def test_small_stage3_runs_on_a_registered_executor(registry, finished_copy, name) -> None:
    # the session is far below the in-process size: only the built-in pool is bypassed then
    register_executor(name, lambda config: RecordingExecutor(), overwrite=name == "local")
    config = fast_config(finished_copy.root, scheduler=name, resume=False)
    for target in _aligned(config):
        target.unlink()
    run_stage3(config, progress=False)
    (executor,) = RecordingExecutor.made
    assert executor.calls == [("_reproject_task", _aligned(config))]
    assert executor.closed  # the stage closes what it made
    for target in _aligned(config):
        with open_video(target) as reader:
            assert reader.shape == (N_FRAMES, *SHAPE, 1)


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from labsession.motion import VideoWriter

    frames = np.ones((16, 8, 8, 1), np.float32)
    for path, fmt in (sys.argv[1], "ZARR"), (sys.argv[2], "TIFF"):
        VideoWriter(path, fmt, shape=(32, 8, 8, 1)).write(frames)  # half written
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _kill_mid_write(zarr_target: Path, tiff_target: Path) -> None:
    """Write half of a Zarr and a TIFF video in a child process, then SIGKILL it."""
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(zarr_target), str(tiff_target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_leftover_zarr_folders_are_removed_and_nothing_else(tmp_path: Path) -> None:
    from labsession.motion import VideoWriter

    video = np.random.default_rng(0).random((20, 8, 8, 1)).astype(np.float32)
    real = tmp_path / "aligned_rec.zarr"
    with VideoWriter(real, "ZARR", shape=video.shape) as writer:
        writer.write(video)
    before = _tree(real)
    _kill_mid_write(real, tmp_path / "aligned_rec.tif")  # a rewrite killed half way
    leftovers = sorted(p for p in tmp_path.iterdir() if p.name.startswith("."))
    spool, zarr_tmp = leftovers  # ".aligned_rec.tif.<hex>.npy", ".aligned_rec.zarr.<hex>.tmp"
    assert spool.name.startswith(".aligned_rec.tif.")
    assert spool.suffix == ".npy"
    assert zarr_tmp.name.startswith(".aligned_rec.zarr.")
    assert zarr_tmp.suffix == ".tmp"
    assert (zarr_tmp / "zarr.json").is_file()
    stale = tmp_path / ".aligned_rec.zarr.0123abcd.old"  # replace_dir's aside, target exists
    stale.mkdir()
    (stale / "zarr.json").write_text("{}")
    decoys = [  # names near the pattern, not made by a writer: kept
        tmp_path / ".aligned_rec.zarr.0123ABCD.old",
        tmp_path / ".aligned_rec.zarr.tmp",
        tmp_path / ".aligned_rec.zarr.0123ABCD.tmp",
        tmp_path / "aligned_rec.zarr.0123abcd.tmp",
    ]
    for decoy in decoys:
        decoy.mkdir()
        (decoy / "keep").write_text("x")
    (tmp_path / ".link.0123abcd.tmp").symlink_to(real)

    removed = clean_partial_files(tmp_path)

    assert sorted(removed) == sorted([*leftovers, stale])
    assert not any(p.exists() for p in [*leftovers, stale])
    assert all((decoy / "keep").is_file() for decoy in decoys)
    assert (tmp_path / ".link.0123abcd.tmp").is_symlink()
    assert _tree(real) == before  # the real output is untouched
    with open_video(real) as reader:
        np.testing.assert_array_equal(reader[0:20], video)
    assert clean_partial_files(tmp_path) == []


_KILLED_BETWEEN_RENAMES = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import numpy as np
    import labsession.core.atomic as atomic
    from labsession.motion import VideoWriter

    target = Path(sys.argv[1])
    atomic._exchange = lambda a, b: False  # a file system without RENAME_EXCHANGE
    rename = os.rename

    def rename_then_die(src, dst):
        rename(src, dst)
        if Path(src) == target:  # the old output went aside; the new one is not in yet
            os.kill(os.getpid(), signal.SIGKILL)

    atomic.os.rename = rename_then_die
    with VideoWriter(target, "ZARR", shape=(20, 8, 8, 1)) as writer:
        writer.write(np.full((20, 8, 8, 1), 2.0, np.float32))
    """
)


def test_zarr_killed_between_the_renames_is_restored(tmp_path: Path) -> None:
    from labsession.motion import VideoWriter

    real = tmp_path / "aligned_rec.zarr"
    video = np.full((20, 8, 8, 1), 1.0, np.float32)
    with VideoWriter(real, "ZARR", shape=video.shape) as writer:
        writer.write(video)
    before = _tree(real)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "keep").write_text("x")
    link = tmp_path / ".aligned_rec.zarr.deadbeef.old"
    link.symlink_to(other)  # named like an aside: never followed, never moved
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_BETWEEN_RENAMES, str(real)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    assert not real.exists()  # the earlier output is only under its aside name
    new_tmp = [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    assert len(new_tmp) == 1

    removed = clean_partial_files(tmp_path)

    assert removed == new_tmp  # the unrecorded new output; the aside was renamed back
    assert _tree(real) == before
    with open_video(real) as reader:
        np.testing.assert_array_equal(reader[0:20], video)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([real.name, link.name, "elsewhere"])
    assert link.is_symlink()
    assert (other / "keep").read_text() == "x"


def test_stage3_clears_a_killed_zarr_writer_before_rewriting(finished_copy) -> None:
    config = fast_config(finished_copy.root, align_output_format="ZARR")
    first, second = _aligned(config)[:2]
    assert first.suffix == ".zarr"
    _kill_mid_write(first, config.final_dir / "aligned_other.tif")
    leftover = [p for p in config.final_dir.iterdir() if p.name.startswith(".aligned_")]
    assert len(leftover) == 2
    assert any(p.is_dir() for p in leftover)

    run_stage3(config, progress=False)

    assert not [p for p in config.final_dir.iterdir() if p.name.startswith(".")]
    for target in (first, second):
        with open_video(target) as reader:
            assert reader.shape == (N_FRAMES, *SHAPE, 1)
