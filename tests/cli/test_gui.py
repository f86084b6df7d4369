"""``labsession gui`` opens the recorder window (real process, real X display)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _gui(tmp_path, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "labsession.cli", "gui", "--base-path", str(tmp_path / "s"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.gui
def test_gui_opens_draws_and_closes(tmp_path, display, gui_state_dir):
    env = {**os.environ, "DISPLAY": display}
    out = _gui(tmp_path, "--duration", "3", "--channels", "4", "--fs", "500", env=env)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # nothing in the cwd
    assert list((gui_state_dir / "gui").glob("*.ini"))


def test_gui_without_display_says_what_to_do(tmp_path):
    """What to type: ``xvfb-run -a labsession gui`` or ``labsession record`` (the message used
    to give the app's hint for scripts: app.run(mode='headless'), xvfb-run -a python
    your_script.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = _gui(tmp_path, env=env)
    assert out.returncode == 1  # a runtime failure, in one line
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert "xvfb-run -a labsession gui" in out.stderr
    assert "labsession record" in out.stderr
    assert "your_script.py" not in out.stderr
    assert "mode='headless'" not in out.stderr


def test_gui_needs_two_classes(tmp_path):
    out = _gui(tmp_path, "--classes", "Rest")
    assert out.returncode == 2
    assert "give at least 2" in out.stderr


def test_the_windows_classifier_learns_a_class_clicked_once_first(tmp_path):
    # Record, Fist, Open, Rest, Stop: Train skipped the first segment, so Fist was never learnt.
    import numpy as np

    from labsession.cli._classifier import train_lda
    from labsession.recording import Session, StreamInfo, TrainingData

    fs, rng = 500.0, np.random.default_rng(0)
    with Session(tmp_path, class_names=["Rest", "Fist", "Open"]) as session:
        session.init_stream("emg", StreamInfo(n_channels=2, fs=fs))
        for second, (label, level) in enumerate([(1, 3.0), (2, 6.0), (0, 0.5)]):
            session.add_label(label, timestamp=float(second))
            samples = rng.normal(scale=level, size=(int(fs), 2)).astype(np.float32)
            session.append("emg", samples, second + np.arange(int(fs)) / fs)
    model = train_lda(TrainingData([session.path]), "emg")
    assert list(model.classes_) == [0, 1, 2]
