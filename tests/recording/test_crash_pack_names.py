"""A pack killed under one name leaves no temporary zip once the session is packed under another."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from labsession.recording import Session, StreamInfo, open_session_store

# Packs the session under the name given, and stalls once its temporary zip is written whole
# (before it is verified and renamed): the test kills it there with SIGKILL.
STALLING_PACKER = """
import sys, time
from labsession.recording import Session, _packed

real = _packed.verify_zip


def stall(path, *args, **kwargs):
    print("written", path, flush=True)
    time.sleep(600)


_packed.verify_zip = stall
session = Session.attach(sys.argv[1])
session.name = sys.argv[2]
session.pack_to_zip()
"""


def _recorded(base):
    session = Session(base, class_names=["a", "b"], name="pilot")
    session.init_stream("emg", StreamInfo(2, 100.0))
    data = np.arange(500, dtype=np.float32).reshape(250, 2)
    session.append("emg", data, 5 + np.arange(250) / 100.0)
    session.add_label(1, timestamp=5.5)
    session.close()
    return session.path, data


def _killed_pack(folder, name):
    proc = subprocess.Popen(
        [sys.executable, "-c", STALLING_PACKER, str(folder), name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().split()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert line[0] == "written", line
    return line[1]


@pytest.mark.slow
@pytest.mark.parametrize("then", ["attach", "renamed", "unnamed"])
def test_a_pack_killed_under_one_name_leaves_nothing_once_packed_under_another(tmp_path, then):
    folder, data = _recorded(tmp_path)
    temp = _killed_pack(folder, "first try")
    assert os.path.basename(temp).startswith(f".{folder.name}_first-try.session.zip.")
    assert os.path.isfile(temp)
    # Another session whose folder's name extends this one's: its pack may be under way.
    other = tmp_path / f"{folder.name}_x"
    other.mkdir()
    others_temp = tmp_path / f".{folder.name}_x.session.zip.0123abcd.tmp"
    others_temp.write_bytes(b"another pack")

    session = Session.attach(folder)
    if then == "attach":  # attach alone cleans up what the killed pack left
        assert not os.path.exists(temp)
        session.close()
        return
    session.name = "second" if then == "renamed" else None
    zip_path = session.pack_to_zip()
    assert zip_path.name == (
        f"{folder.name}_second.session.zip" if then == "renamed" else f"{folder.name}.session.zip"
    )
    assert not os.path.exists(temp)
    assert others_temp.read_bytes() == b"another pack"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [zip_path.name, other.name, others_temp.name]
    )
    with open_session_store(zip_path) as store:
        got, ts = store.get_continuous("emg")
        assert [(e.timestamp, e.class_index) for e in store.label_track] == [(5.5, 1)]
    np.testing.assert_array_equal(got, data)
    np.testing.assert_array_equal(ts, 5 + np.arange(250) / 100.0)
