"""``labsession plot``: a real subprocess writes a picture of a real session."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from labsession.testing import record_synthetic_session


@pytest.fixture(scope="module")
def session_zip(tmp_path_factory):
    """A packed 4 s session: 4 EMG channels at 1 kHz and a 3-channel glove, labelled."""
    return record_synthetic_session(
        tmp_path_factory.mktemp("plot_cli"),
        n_channels=4,
        fs=1000.0,
        phase_seconds=1.0,
        repeats=1,
        aux_stream=("glove", 3, 50.0),
    )


def _labsession(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "labsession", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_writes_a_png_of_the_asked_width(session_zip, tmp_path):
    out = tmp_path / "emg.png"
    result = _labsession("plot", session_zip, "-o", out, "--width", 900, "--channels", "0:3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.mode in ("RGB", "RGBA")
        assert image.width == 900
        assert 250 <= image.height <= 600
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    # Mostly white paper, with the traces drawn in matplotlib's first colours.
    assert np.mean(np.all(pixels == 255, axis=1)) > 0.3
    blue = np.all(np.abs(pixels.astype(int) - (31, 119, 180)) < 12, axis=1)
    orange = np.all(np.abs(pixels.astype(int) - (255, 127, 14)) < 12, axis=1)
    assert blue.sum() > 500
    assert orange.sum() > 500


def test_default_output_is_the_session_name_in_the_working_folder(session_zip, tmp_path):
    result = _labsession(
        "plot", session_zip, "--stream", "glove", "--start", 1, "--end", 3, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    expected = tmp_path / session_zip.name.replace(".session.zip", ".png")
    assert result.stdout.strip() == str(expected)
    with Image.open(expected) as image:
        assert image.width == 1600


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--channels", "0:x"], "--channels"),
        (["--channels", "7"], "--channels"),
        (["--start", "3", "--end", "2"], "--end"),
        (["--start", "-1"], "--start"),
        (["--start", "60"], "--start"),
        (["--stream", "eeg"], "--stream"),
        (["-o", "picture.txt"], "--output"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_write_nothing(session_zip, tmp_path, args, option):
    result = _labsession("plot", session_zip, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert option in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_missing_session_exits_1_with_one_line(tmp_path):
    result = _labsession("plot", tmp_path / "nope.session.zip", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "nope.session.zip" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_session_whose_clock_was_reset_plots(tmp_path):
    """Timestamps that start over mid-recording (stored as given) are drawn on the range they
    span; this was a raw TypeError."""
    from labsession.recording import Session, StreamInfo

    with Session(tmp_path / "s", class_names=["Rest"]) as session:
        session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
        session.add_label(0, timestamp=5000.0)
        session.append("emg", np.ones((200, 2), np.float32), 5000 + np.arange(200) / 100)
        session.append("emg", np.ones((200, 2), np.float32), 10 + np.arange(200) / 100)
    out = tmp_path / "reset.png"
    result = _labsession("plot", session.path, "-o", out)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size[0] > 0
    result = _labsession("plot", session.path, "-o", out, "--start", "6000")
    assert result.returncode == 2
    assert "is at or past the end" in result.stderr
