"""A live session folder is locked: no other process (or session object) attaches or packs it."""

import os
import signal
import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo, open_session_store, session_lock_holder

RECORDER = """
import sys, time
import numpy as np
from labsession.recording import Session, StreamInfo

session = Session(sys.argv[1])
session.init_stream("emg", StreamInfo(2, 1000.0))
sent = 0
while True:
    index = np.arange(sent, sent + 100)
    session.append("emg", np.stack([index, -index], axis=1).astype(np.float32), index / 1000)
    sent += 100
    if sent == 1000:
        session.flush()
        print(session.path, flush=True)
    time.sleep(0.01)
"""


def test_a_recording_process_holds_its_folder_until_it_dies(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        folder = tmp_path / os.path.basename(proc.stdout.readline().strip())
        assert folder.is_dir()
        holder = session_lock_holder(folder)
        assert holder is not None
        assert (holder.pid, holder.host) == (proc.pid, socket.gethostname())
        with pytest.raises(SessionError, match=rf"process {proc.pid} on {socket.gethostname()}"):
            Session.attach(folder)
        # Readers are not confused by the lock: it is not in the folder.
        assert not [p for p in folder.iterdir() if "lock" in p.name]
        with open_session_store(folder) as store:
            assert store.n_samples("emg") >= 1000
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()

    assert session_lock_holder(folder) is None  # the kernel released it with the process
    session = Session.attach(folder)  # takes over the stale lock file
    holder = session_lock_holder(folder)
    assert (holder.pid, holder.host) == (os.getpid(), socket.gethostname())
    zip_path = session.pack_to_zip()
    with zipfile.ZipFile(zip_path) as zf:
        assert not [n for n in zf.namelist() if "lock" in n]
    with open_session_store(zip_path) as store:
        data, ts = store.get_continuous("emg")
    index = np.arange(len(ts))
    np.testing.assert_array_equal(data[:, 0], index)
    np.testing.assert_array_equal(ts, index / 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == [zip_path.name]  # lock file gone


def test_a_second_session_object_in_the_same_process_is_refused(tmp_path):
    first = Session(tmp_path)
    first.init_stream("emg", StreamInfo(1, 100.0))
    with pytest.raises(SessionError, match=rf"in use by process {os.getpid()}"):
        Session.attach(first.path)
    first.close()
    assert session_lock_holder(first.path) is None
    second = Session.attach(first.path)
    # Closed, the first object cannot pack behind the second one's back.
    with pytest.raises(SessionError, match="in use"):
        first.pack_to_zip()
    assert second.pack_to_zip().is_file()


def test_a_closed_session_packs_later_taking_the_lock_again(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(1, 100.0))
    session.append("emg", np.ones((50, 1), np.float32), np.arange(50) / 100)
    session.close()
    assert session_lock_holder(session.path) is None
    zip_path = session.pack_to_zip()
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == [zip_path.name]


def test_a_lock_file_without_a_live_holder_reads_as_unlocked(tmp_path):
    folder = tmp_path / "2026-01-01_00-00-00_00000000"
    folder.mkdir()
    # As a killed recorder leaves it: a description, no lock held.
    (tmp_path / f".{folder.name}.lock").write_text('{"pid": 1, "host": "elsewhere"}')
    assert session_lock_holder(folder) is None
    assert session_lock_holder(tmp_path / "never-recorded") is None
