"""A live session folder is locked: no other process (or session object) attaches or packs it."""

import os
import signal
import socket
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo, open_session_store, session_lock_holder
from labsession.recording._preflight import find_unfinished_sessions

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


# -- a lock path that is not a lock file: never written, never blocked on, never removed -----


def _closed_session(base):
    session = Session(base)
    session.init_stream("emg", StreamInfo(1, 100.0))
    session.append("emg", np.arange(30, dtype=np.float32)[:, None], np.arange(30) / 100)
    session.close()
    return session.path


def test_a_symbolic_link_at_the_lock_path_is_refused_and_its_target_left_alone(tmp_path):
    folder = _closed_session(tmp_path)
    lock = tmp_path / f".{folder.name}.lock"
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\n" * 100)
    lock.symlink_to(notes)
    with pytest.raises(SessionError, match=rf"{lock}.* is a symbolic link, not a lock file"):
        Session.attach(folder)
    with pytest.raises(SessionError, match="symbolic link"):
        session_lock_holder(folder)
    assert notes.read_text() == "precious\n" * 100
    assert lock.is_symlink()
    assert folder.is_dir()

    # A dangling link: nothing is created where it points.
    target = tmp_path / "created-through-the-link"
    lock.unlink()
    lock.symlink_to(target)
    with pytest.raises(SessionError, match="symbolic link"):
        Session.attach(folder)
    assert not os.path.lexists(target)
    assert lock.is_symlink()


def test_a_hard_link_at_the_lock_path_is_not_written(tmp_path):
    folder = _closed_session(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    os.link(notes, tmp_path / f".{folder.name}.lock")
    with pytest.raises(SessionError, match="a file with 2 names"):
        Session.attach(folder)
    assert notes.read_text() == "precious"
    assert session_lock_holder(folder) is None  # readable, and nobody holds it


@pytest.mark.timeout(20)
def test_a_named_pipe_at_the_lock_path_blocks_nothing(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(1, 100.0))
    session.append("emg", np.arange(30, dtype=np.float32)[:, None], np.arange(30) / 100)
    session.close()
    folder = session.path
    lock = tmp_path / f".{folder.name}.lock"
    os.mkfifo(lock)
    with pytest.raises(SessionError, match=rf"{lock} is a named pipe, not a lock file"):
        session_lock_holder(folder)
    with pytest.raises(SessionError, match="named pipe"):
        Session.attach(folder)
    with pytest.raises(SessionError, match="named pipe"):
        session.pack_to_zip()  # closed: it takes the lock again
    assert stat.S_ISFIFO(os.lstat(lock).st_mode)
    with open_session_store(folder) as store:
        assert store.n_samples("emg") == 30


def test_a_folder_at_the_lock_path_is_refused_with_a_session_error(tmp_path):
    folder = _closed_session(tmp_path)
    lock = tmp_path / f".{folder.name}.lock"
    lock.mkdir()
    (lock / "kept").write_text("x")
    with pytest.raises(SessionError, match=rf"{lock} is a folder, not a lock file"):
        Session.attach(folder)
    with pytest.raises(SessionError, match="a folder"):
        session_lock_holder(folder)
    assert (lock / "kept").read_text() == "x"


@pytest.mark.timeout(20)
def test_scans_of_the_base_folder_pass_a_named_pipe_lock_of_another_session(tmp_path):
    mine = _closed_session(tmp_path)
    other = _closed_session(tmp_path)
    os.mkfifo(tmp_path / f".{other.name}.lock")
    # Listed (it is unfinished), so that finishing it says why it cannot be.
    assert find_unfinished_sessions(tmp_path) == sorted([mine, other])
    # An interrupted removal of a third session, whose lock path is a named pipe too.
    (tmp_path / ".third.removing").mkdir()
    os.mkfifo(tmp_path / ".third.lock")
    session = Session.attach(mine)
    assert session.pack_to_zip().is_file()
    assert (tmp_path / ".third.removing").is_dir()  # kept: its lock path is no lock file
    assert stat.S_ISFIFO(os.lstat(tmp_path / ".third.lock").st_mode)
    assert stat.S_ISFIFO(os.lstat(tmp_path / f".{other.name}.lock").st_mode)
