"""``labsession motion`` mistakes end in one clear line (real subprocesses, real files)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def _labsession(*args, cwd):
    argv = [sys.executable, "-m", "labsession", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_compensate_on_a_folder_says_to_give_a_video_or_use_motion_run(tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    np.save(folder / "a.npy", np.ones((3, 8, 8), np.float32))
    result = _labsession("motion", "compensate", folder, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"'{folder}' is a folder; give a video file" in lines[0]
    assert "`labsession motion run`" in lines[0]
    assert "IsADirectoryError" not in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recordings"]  # nothing written


def test_compensate_with_a_typo_in_the_options_file_names_the_key_meant(tmp_path):
    video = tmp_path / "v.npy"
    np.save(video, np.ones((3, 8, 8), np.float32))
    options = tmp_path / "options.toml"
    options.write_text("alpha = 2.0\nbufer_size = 3\n")
    result = _labsession("motion", "compensate", video, "-c", options, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {options}: unknown key 'bufer_size'; did you mean 'buffer_size'?"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["options.toml", "v.npy"]
