"""A pack killed under one name leaves no temporary zip once the session is packed under another."""

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from labsession.errors import SessionError
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


# Deletes every file of the packed folder (renamed aside), meta.json too, then stalls: the
# test kills it there with SIGKILL.
EMPTYING_REMOVER = """
import os, shutil, sys, time
from pathlib import Path
from labsession.recording import Session

real_rmtree = shutil.rmtree


def empty_then_stall(path, *args, **kwargs):
    for entry in list(Path(path).iterdir()):
        real_rmtree(entry) if entry.is_dir() else entry.unlink()
    print("emptied", path, flush=True)
    time.sleep(600)


shutil.rmtree = empty_then_stall
Session.attach(sys.argv[1]).pack_to_zip()
"""


@pytest.mark.slow
def test_a_named_session_s_folder_emptied_when_killed_is_deleted_by_the_next_attach(tmp_path):
    folder, data = _recorded(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", EMPTYING_REMOVER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline().split()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    aside = tmp_path / f".{folder.name}.removing"
    assert line == ["emptied", str(aside)]
    assert aside.is_dir()
    assert not list(aside.iterdir())
    zip_path = tmp_path / f"{folder.name}_pilot.session.zip"

    with pytest.raises(SessionError, match="packed already"):
        Session.attach(folder)  # what a user would try; it also finishes the removal
    assert sorted(p.name for p in tmp_path.iterdir()) == [zip_path.name]
    with open_session_store(zip_path) as store:
        np.testing.assert_array_equal(store.get_continuous("emg")[0], data)


def test_a_leftover_holding_a_file_its_zip_lacks_is_kept(tmp_path):
    folder, _ = _recorded(tmp_path)
    Session.attach(folder).pack_to_zip()
    aside = tmp_path / f".{folder.name}.removing"
    aside.mkdir()
    (aside / "notes.txt").write_text("only here")  # not in the zip: kept
    with pytest.raises(SessionError, match="packed already"):
        Session.attach(folder)
    assert (aside / "notes.txt").read_text() == "only here"


@pytest.mark.parametrize("named", [True, False])
def test_a_temporary_zip_another_folder_s_pack_may_be_writing_is_kept(tmp_path, named):
    # Two folders whose packs take one zip name: X named "a" and X_a (named: this session's
    # zip name is X_a's), or Y named "b" and X = Y_b unnamed (its own <folder>.session.zip).
    folder, _ = _recorded(tmp_path)
    if named:
        other = tmp_path / f"{folder.name}_a"
        zip_name = f"{other.name}.session.zip"
    else:
        other = tmp_path / "Y"
        folder = folder.rename(tmp_path / "Y_b")
        zip_name = "Y_b.session.zip"
    other.mkdir()
    live = tmp_path / f".{zip_name}.0123abcd.tmp"  # the other folder's pack, under way
    live.write_bytes(b"another pack")
    session = Session.attach(folder)
    session.name = "a" if named else None
    assert session.pack_to_zip().name == zip_name
    assert live.read_bytes() == b"another pack"


@pytest.mark.parametrize("name", [None, "pilot"])
def test_a_leftover_differing_from_its_zip_by_one_byte_is_kept(tmp_path, name):
    # The zip there was replaced since (a backup put back, an archive repaired) or is another
    # session's: the leftover may hold the only copy of that byte.
    folder, _ = _recorded(tmp_path)
    copy = shutil.copytree(folder, tmp_path / "copy")
    session = Session.attach(folder)
    session.name = name
    session.pack_to_zip()
    aside = copy.rename(tmp_path / f".{folder.name}.removing")  # meta.json and all still there
    chunks = (aside / "emg.zarr").rglob("*")
    chunk = next(p for p in chunks if p.name != "zarr.json" and p.is_file())
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 1
    chunk.write_bytes(bytes(raw))
    with pytest.raises(SessionError, match="packed already"):
        Session.attach(folder)
    assert chunk.read_bytes() == bytes(raw)
