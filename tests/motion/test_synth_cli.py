"""``labsession motion synth`` and ``examples/session.toml``: try motion correction without data."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from labsession.motion import OFOptions, compensate_arr, open_video, synthetic_video
from labsession.motion.session import SessionConfig, run_session

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "session.toml"


def _labsession(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "labsession", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _truth(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    assert lines[0] == "frame,u_px,v_px"
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    np.testing.assert_array_equal(rows[:, 0], np.arange(len(rows)))
    return rows[:, 1:]


def test_synth_writes_the_video_and_its_truth_and_correction_recovers_it(tmp_path):
    out = tmp_path / "new" / "rec1.tif"
    result = _labsession(
        "motion", "synth", out, "--frames", 30, "--size", 64, 56, "--seed", 3, "--shift", 2.5
    )
    assert result.returncode == 0, result.stderr
    truth_file = tmp_path / "new" / "rec1.truth.csv"
    assert result.stdout.split() == [str(out), str(truth_file)]
    video = tifffile.imread(out)
    assert video.shape == (30, 64, 56)
    assert video.dtype == np.float32
    with open_video(out) as reader:  # the motion readers take it as written
        assert reader.shape == (30, 64, 56, 1)
    truth = _truth(truth_file)
    assert truth.shape == (30, 2)
    # The same as the library's generator with the same arguments (4 decimals in the file).
    expected_video, expected_truth = synthetic_video(
        n_frames=30, shape=(64, 56), max_shift=2.5, seed=3
    )
    np.testing.assert_array_equal(video, expected_video[..., 0])
    np.testing.assert_allclose(truth, expected_truth, atol=6e-5)
    assert truth.std(axis=0).min() > 0.3  # it does move
    # Motion correction finds the motion: the estimated mean displacement per frame follows the
    # truth up to a constant (the reference's own position).
    options = OFOptions(flow_backend="diso", quality_setting="fast")
    _, w = compensate_arr(video, video[:10].mean(axis=0), options)
    estimated = w[:, 8:-8, 8:-8].mean(axis=(1, 2))
    for k in range(2):
        assert np.corrcoef(estimated[:, k], truth[:, k])[0, 1] > 0.95
        residual = (estimated[:, k] - estimated[:, k].mean()) - (truth[:, k] - truth[:, k].mean())
        assert np.abs(residual).max() < 0.5


def test_offsets_move_one_field_and_the_truth_with_it(tmp_path):
    first, second = tmp_path / "a.tif", tmp_path / "b.tiff"
    for path, offset in ((first, ("0", "0")), (second, ("-2.5", "1.5"))):
        result = _labsession(
            "motion", "synth", path, "--frames", 6, "--size", 32, 32, "--offset", *offset
        )
        assert result.returncode == 0, result.stderr
    difference = _truth(tmp_path / "b.truth.csv") - _truth(tmp_path / "a.truth.csv")
    np.testing.assert_allclose(difference, np.tile([-2.5, 1.5], (6, 1)), atol=2e-4)
    a, b = tifffile.imread(first), tifffile.imread(second)
    # b[y + 1.5, x - 2.5] = a[y, x]: whole-pixel parts checked on the mean image, away from edges.
    moved = np.roll(a.mean(axis=0), (2, -3), axis=(0, 1))[6:-6, 6:-6]
    same = a.mean(axis=0)[6:-6, 6:-6]
    target = b.mean(axis=0)[6:-6, 6:-6]
    assert (
        np.corrcoef(moved.ravel(), target.ravel())[0, 1]
        > np.corrcoef(same.ravel(), target.ravel())[0, 1]
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["out.png"], "OUT"),
        (["out.tif", "--size", "8", "8"], "--size"),
        (["out.tif", "--frames", "0"], "--frames"),
        (["out.tif", "--offset", "9", "0"], "--offset"),
        (["out.tif", "--frames", "100000", "--size", "512", "512"], "--frames"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_write_nothing(tmp_path, args, option):
    result = _labsession("motion", "synth", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert option in lines[0]
    assert list(tmp_path.iterdir()) == []


def _documented_commands() -> list[list[str]]:
    """The ``labsession motion synth`` lines of the example's opening comment, as argv."""
    lines = re.findall(r"^#\s+(labsession motion synth .*)$", EXAMPLE.read_text(), re.MULTILINE)
    assert len(lines) == 3
    return [shlex.split(line)[1:] for line in lines]


def test_example_session_toml_loads_and_runs_on_synth_videos(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "session.toml")
    for argv in _documented_commands():
        # The documented commands, made small: into the copy's folder, 24 frames of 48x48.
        argv = [arg.replace("examples/", f"{tmp_path}/") for arg in argv]
        result = _labsession(*argv, "--frames", 24, "--size", 48, 48)
        assert result.returncode == 0, result.stderr
    config = SessionConfig.from_file(tmp_path / "session.toml")
    assert config.root == (tmp_path / "data").resolve()
    assert sorted(p.name for p in config.root.glob(config.pattern)) == [
        "rec1.tif",
        "rec2.tif",
        "rec3.tif",
    ]
    assert config.flow_backend == "flowreg"
    # relative output folders live under root, as in pyflowreg
    assert config.output_dir == (tmp_path / "data" / "compensated_outputs").resolve()
    assert config.final_dir == (tmp_path / "data" / "final_results").resolve()
    stage1 = config.stage1_options(config.root / "rec1.tif", tmp_path / "out")
    assert stage1.reference_frames == list(range(20))
    # Run as written but with the fast DIS flow in this process (the numba kernels of the
    # example's flowreg cost a compile on a fresh machine): stage 2 recovers the documented
    # offsets of rec1 and rec3 from rec2, the center.
    fast = config.model_copy(update={"flow_backend": "diso", "n_workers": 1})
    final = run_session(fast, stages=[1, 2, 3], progress=False)
    assert final.shape == (48, 48)
    assert 0.3 < final.mean() < 1.0
    for name, expected in (("rec1", (-3.0, 2.0)), ("rec2", (0.0, 0.0)), ("rec3", (2.5, -1.5))):
        w = np.load(config.output_dir / name / "w_to_reference.npz")
        found = np.median(w["u"][8:-8, 8:-8]), np.median(w["v"][8:-8, 8:-8])
        np.testing.assert_allclose(found, expected, atol=0.35)
