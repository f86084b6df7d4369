"""replace_dir: a finished folder takes another's place in one step (the Zarr writer's commit)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from labsession.core import atomic
from labsession.core.atomic import create_temp_dir, recover_replaced_dir, replace_dir


def _folder(parent: Path, content: str, n_files: int = 3) -> Path:
    folder = create_temp_dir(parent, prefix=".new.", suffix=".tmp")
    for i in range(n_files):
        (folder / f"part{i}").write_text(content)
    (folder / "marker").write_text(content)
    return folder


def _tree(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_folder_replaces_folder_file_or_nothing(tmp_path, monkeypatch, exchange):
    if not exchange:  # as on macOS or Windows: no renameat2
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    dst = tmp_path / "video.zarr"
    replace_dir(_folder(tmp_path, "one", n_files=5), dst)  # nothing there yet
    assert _tree(dst)["marker"] == "one"
    replace_dir(_folder(tmp_path, "two", n_files=2), dst)  # a folder with more files
    assert _tree(dst) == {"marker": "two", "part0": "two", "part1": "two"}  # old parts gone
    dst_file = tmp_path / "was_a_file.zarr"
    dst_file.write_text("x")
    replace_dir(_folder(tmp_path, "three"), dst_file)
    assert _tree(dst_file)["marker"] == "three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.zarr", "was_a_file.zarr"]


def test_missing_source_changes_nothing(tmp_path):
    dst = tmp_path / "video.zarr"
    replace_dir(_folder(tmp_path, "one"), dst)
    with pytest.raises(FileNotFoundError):
        replace_dir(tmp_path / "gone", dst)
    assert _tree(dst)["marker"] == "one"


@pytest.mark.skipif(atomic._renameat2() is None, reason="renameat2 is Linux-only")
def test_readers_never_see_the_folder_missing_or_half_written(tmp_path):
    dst = tmp_path / "video.zarr"
    replace_dir(_folder(tmp_path, "0"), dst)
    stop = threading.Event()
    problems: list[str] = []
    written = {str(i) for i in range(150)}
    reads = 0

    def watch() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                content = (dst / "marker").read_text()
            except FileNotFoundError as exc:
                problems.append(f"missing: {exc.filename}")
                continue
            reads += 1
            if content not in written:  # each file is whole, from one version or the next
                problems.append(f"partial: {content!r}")

    watcher = threading.Thread(target=watch)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: many reads fall between the renames
    watcher.start()
    try:
        for i in range(1, 150):
            replace_dir(_folder(tmp_path, str(i), n_files=1), dst)
    finally:
        stop.set()
        watcher.join()
        sys.setswitchinterval(interval)
    assert reads > 0
    assert problems == []
    assert _tree(dst)["marker"] == "149"


def test_staged_file_publishes_on_commit_only(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    staged = atomic.StagedFile(target)
    staged.tmp.write_bytes(b"half")
    assert target.read_bytes() == b"old"  # nothing published while writing
    staged.abort()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    staged = atomic.StagedFile(target)
    staged.tmp.write_bytes(b"new")
    staged.commit()
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


# A kill between the two renames of the rename-aside path, and what recover_replaced_dir does --

_KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from labsession.core import atomic

atomic._exchange = lambda a, b: False  # as on file systems without RENAME_EXCHANGE
rename = os.rename

def rename_then_die(src, dst):
    rename(src, dst)
    os.kill(os.getpid(), signal.SIGKILL)  # after the old folder went aside, before the new came

atomic.os.rename = rename_then_die
atomic.replace_dir(sys.argv[1], sys.argv[2])
"""


def _kill_between_renames(src: Path, dst: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _KILL_BETWEEN_RENAMES, str(src), str(dst)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_kill_between_renames_then_recovery_restores_the_earlier_folder(tmp_path):
    dst = tmp_path / "video.zarr"
    replace_dir(_folder(tmp_path, "one"), dst)
    new = _folder(tmp_path, "two")
    _kill_between_renames(new, dst)
    assert not dst.exists()  # the earlier output lives only under its aside name
    (aside,) = [p for p in tmp_path.iterdir() if p.suffix == ".old"]
    assert re.fullmatch(r"\.video\.zarr\.[0-9a-f]{8}\.old", aside.name)

    assert recover_replaced_dir(dst) == (aside, [])

    assert _tree(dst) == {"marker": "one", "part0": "one", "part1": "one", "part2": "one"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dst.name, new.name])
    assert recover_replaced_dir(dst) == (None, [])  # nothing left to do
    replace_dir(new, dst)  # the next write goes through as usual
    assert _tree(dst)["marker"] == "two"


def test_recovery_removes_asides_of_an_existing_target_and_nothing_else(tmp_path):
    dst = tmp_path / "video.zarr"
    replace_dir(_folder(tmp_path, "new"), dst)
    stale = tmp_path / ".video.zarr.0123abcd.old"  # a removal killed half way
    (stale / "c" / "0").mkdir(parents=True)
    (stale / "c" / "0" / "chunk").write_text("old")
    stale_file = tmp_path / ".video.zarr.89abcdef.old"  # the target was a file before
    stale_file.write_text("old file")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    link = tmp_path / ".video.zarr.deadbeef.old"
    link.symlink_to(outside)
    keep = [  # near the pattern, not this target's aside
        tmp_path / ".video.zarr.0123ABCD.old",
        tmp_path / ".video.zarr.0123abc.old",
        tmp_path / ".other.zarr.0123abcd.old",
        tmp_path / "video.zarr.0123abcd.old",
    ]
    for path in keep:
        path.mkdir()

    restored, removed = recover_replaced_dir(dst)

    assert restored is None
    assert sorted(removed) == [stale, stale_file]
    assert not stale.exists()
    assert not os.path.lexists(stale_file)
    assert link.is_symlink()
    assert (outside / "keep").read_text() == "x"  # the link was not followed
    assert all(path.is_dir() for path in keep)
    assert _tree(dst)["marker"] == "new"
