"""examples/motion_session.py runs end to end on tiny data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[3] / "examples" / "motion_session.py"


@pytest.mark.slow
def test_example_runs_on_tiny_data(tmp_path: Path) -> None:
    figure = tmp_path / "qc.png"
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--tiny",
            "--out",
            str(tmp_path / "demo"),
            "--figure",
            str(figure),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "center recording: rec_1.tif" in done.stdout
    assert "final valid mask:" in done.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "demo/data/final_results/final_valid_idx.npz").is_file()
