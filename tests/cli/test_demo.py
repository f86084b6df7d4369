import re
import subprocess
import sys

from labsession.recording import open_session_store


def test_demo_records_packs_and_trains(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "labsession.cli", "demo", "--out", str(tmp_path), "--repeats", "3"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": ""},
    ).stdout
    zips = list((tmp_path / "sessions").glob("*.session.zip"))
    assert len(zips) == 1
    assert zips[0].name in out
    with open_session_store(zips[0]) as store:
        assert store.class_names == ["Rest", "Fist", "Open"]
        assert len(store.label_track) == 13
    accuracy = float(re.search(r"accuracy (\d+\.\d)%", out).group(1))
    assert accuracy > 80.0
