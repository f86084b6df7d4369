import os
import re
import subprocess
import sys

import pytest

from labsession.recording import open_session_store


@pytest.mark.slow
def test_demo_records_trains_and_replays(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "labsession.cli",
            "demo",
            "--out",
            str(tmp_path),
            "--cycle",
            "1.0",
            "--repeats",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "300"},
    ).stdout
    zips = list((tmp_path / "sessions").glob("*.session.zip"))
    assert len(zips) == 1
    assert zips[0].name in out
    with open_session_store(zips[0]) as store:
        assert store.class_names == ["Rest", "Fist", "Open"]
        assert [e.class_index for e in store.label_track] == [0, 1, 0, 2, 0, 1, 0, 2, 0]
        assert 8.0 < store.n_samples("emg") / 2048.0 < 10.5
    cv = float(re.search(r"grouped by repetition: accuracy (\d+\.\d)%", out).group(1))
    live = float(re.search(r"live pipeline: \d+ predictions, accuracy (\d+\.\d)%", out).group(1))
    assert cv > 80.0  # chance is 33 %
    assert live > 60.0  # windows straddling a cue change count as errors
