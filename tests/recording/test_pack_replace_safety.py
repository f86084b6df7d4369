"""A pack never replaces or removes a zip holding what the folder lacks; earlier packs of the same
recording under another name go; a discard cut short by a kill is cleaned up."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from labsession.core.archive import pack_zip
from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo, find_sessions, open_session_store
from labsession.recording._leftovers import clean_removal_leftovers
from labsession.recording._lock import SessionLock
from labsession.recording._preflight import find_unfinished_sessions

ZIP = ".session.zip"


def _samples(start, n):
    index = np.arange(start, start + n)
    return (index[:, None] * 2 + np.arange(2)).astype(np.float32), start / 100.0 + np.arange(
        n
    ) / 100.0


def _listing(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _n_samples(zip_path):
    with open_session_store(zip_path) as store:
        return store.n_samples("emg"), len(store.label_track), store.name


def _kill_after_line(script, *args):
    """Run ``script``, wait for its first line, SIGKILL it; return that line's words."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        words = proc.stdout.readline().split()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    return words


# -- 1. a zip holding more than the folder ------------------------------------------------------
def _stale_copy_beside_its_zip(base, what):
    """A session packed whole, and a copy of its folder taken before ``what`` was recorded put
    back (a sync restoring a snapshot): the copy is listed as unfinished."""
    session = Session(base, class_names=["rest", "fist"])
    session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    session.append("emg", *_samples(0, 300))
    session.save_meta()
    snapshot = base.parent / f"{base.name}_snapshot"
    shutil.copytree(session.path, snapshot)
    if what == "samples":
        session.append("emg", *_samples(300, 700))
    elif what == "labels":
        session.add_label(1, timestamp=2.5)
    elif what == "streams":
        session.init_stream("imu", StreamInfo(n_channels=3, fs=50.0))
    else:
        (session.path / "notes.txt").write_text("observations")
    folder = session.path
    zip_path = session.pack_to_zip()
    assert not folder.exists()
    shutil.copytree(snapshot, folder)
    return folder, zip_path


@pytest.mark.parametrize(
    ("what", "said"),
    [
        ("samples", "holds more samples of stream 'emg' (1000; the folder holds 300)"),
        ("labels", "holds more labels (1; the folder holds 0)"),
        ("streams", "holds streams ['imu'] that the folder lacks"),
        ("notes", "holds 'notes.txt', which the folder lacks"),
    ],
)
def test_a_zip_holding_more_than_the_folder_is_never_replaced(tmp_path, what, said):
    base = tmp_path / "sessions"
    folder, zip_path = _stale_copy_beside_its_zip(base, what)
    assert find_unfinished_sessions(base) == [folder]
    packed, folder_files = zip_path.read_bytes(), _listing(folder)

    with pytest.raises(SessionError) as caught:
        Session.attach(folder).pack_to_zip()  # the Finish button, the documented recovery
    message = str(caught.value)
    assert str(folder) in message
    assert str(zip_path) in message
    assert said in message
    assert "nothing was changed or deleted" in message
    assert "\n" not in message
    assert zip_path.read_bytes() == packed
    assert _listing(folder) == folder_files
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == sorted(
        [folder.name, zip_path.name]
    )
    assert not list(base.glob(".*.tmp"))


def test_another_recording_or_a_foreign_file_at_the_zip_name_is_never_replaced(tmp_path):
    other = Session(tmp_path / "other")
    other.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    other.append("emg", *_samples(0, 50))
    other.close()
    meta = json.loads((other.path / "meta.json").read_text())
    meta["created"] = "2020-01-01T00:00:00"  # recorded another time (the same second is likely)
    (other.path / "meta.json").write_text(json.dumps(meta))
    other_zip = tmp_path / "other.session.zip"
    pack_zip(other.path, other_zip)

    for i, (content, said) in enumerate(
        [
            (other_zip.read_bytes(), r"it is another recording \(created '"),
            (b"a file of the user's", r"it cannot be read as a session \("),
        ]
    ):
        session = Session(tmp_path / str(i))
        session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
        session.append("emg", *_samples(0, 500))
        session.close()
        zip_path = session.path.with_name(session.path.name + ZIP)
        zip_path.write_bytes(content)
        with pytest.raises(SessionError, match=said):
            session.pack_to_zip()
        assert zip_path.read_bytes() == content
        with open_session_store(session.path) as store:
            assert store.n_samples("emg") == 500


def test_an_earlier_pack_that_the_folder_holds_in_full_is_replaced(tmp_path):
    session = Session(tmp_path, class_names=["rest", "fist"])
    session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    session.append("emg", *_samples(0, 300))
    session.add_label(0, timestamp=1.0)
    session.save_meta()
    zip_path = session.path.with_name(session.path.name + ZIP)
    pack_zip(session.path, zip_path)  # the state a pack killed before the folder's removal leaves
    session.append("emg", *_samples(300, 200))
    session.add_label(1, timestamp=4.0)
    assert session.pack_to_zip() == zip_path
    assert _n_samples(zip_path) == (500, 2, None)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [zip_path.name]


# -- 2. one zip name for two folders ------------------------------------------------------------
def _folder_and_its_copy(base):
    """Folder X (500 samples) and a copy ``X_backup`` of it, each recorded on differently."""
    first = Session(base)
    first.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    first.append("emg", *_samples(0, 500))
    first.close()
    copy = base / f"{first.path.name}_backup"
    shutil.copytree(first.path, copy)
    session = Session.attach(copy)
    session.append("emg", *_samples(1000, 10))
    session.close()
    return first.path, copy


def test_a_named_session_and_a_folder_called_like_its_zip_never_replace_each_other(tmp_path):
    # The named session packs first; the copy's pack, to the same file name, is refused.
    folder, copy = _folder_and_its_copy(tmp_path / "a")
    session = Session.attach(folder)
    session.append("emg", *_samples(2000, 1000))
    session.name = "backup"
    zip_path = session.pack_to_zip()
    assert zip_path.name == copy.name + ZIP
    with pytest.raises(SessionError, match=r"holds more samples of stream 'emg' \(1500; the"):
        Session.attach(copy).pack_to_zip()
    assert _n_samples(zip_path) == (1500, 0, "backup")
    with open_session_store(copy) as store:
        assert store.n_samples("emg") == 510

    # The copy packs first; the named session, holding more but other samples, is refused.
    folder, copy = _folder_and_its_copy(tmp_path / "b")
    zip_path = Session.attach(copy).pack_to_zip()
    session = Session.attach(folder)
    session.append("emg", *_samples(2000, 1000))
    session.name = "backup"
    with pytest.raises(SessionError, match=r"holds other samples of stream 'emg' than the folder"):
        session.pack_to_zip()
    assert _n_samples(zip_path) == (510, 0, None)
    with open_session_store(folder) as store:
        assert store.n_samples("emg") == 1500


# -- 3. an earlier pack under the session's former name -----------------------------------------
PACKED_THEN_KILLED = """
import sys, time
from labsession.recording import Session, _session


def stall(folder):
    print("zipped", folder, flush=True)  # the zip is in place; the folder not yet removed
    time.sleep(600)


_session.remove_folder_aside = stall
Session.attach(sys.argv[1]).pack_to_zip()
"""


def test_a_pack_after_a_rename_removes_the_earlier_pack_of_the_same_recording_only(tmp_path):
    folder, copy = _folder_and_its_copy(tmp_path)
    diverged = Session.attach(copy).pack_to_zip()  # X_backup.session.zip: same created, other data
    unrelated = Session(tmp_path / "elsewhere")
    unrelated.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    unrelated.append("emg", *_samples(5000, 20))  # another recording (perhaps the same second)
    look_alike = tmp_path / f"{folder.name}_other{ZIP}"
    shutil.move(unrelated.pack_to_zip(), look_alike)

    assert _kill_after_line(PACKED_THEN_KILLED, str(folder)) == ["zipped", str(folder)]
    earlier = folder.with_name(folder.name + ZIP)
    assert earlier.is_file()
    assert folder.is_dir()

    session = Session.attach(folder)
    session.name = "pilot"
    session.add_label(0, timestamp=3.0)
    zip_path = session.pack_to_zip()
    assert zip_path.name == f"{folder.name}_pilot{ZIP}"
    assert not os.path.lexists(earlier)
    assert find_sessions(tmp_path) == sorted([zip_path, diverged, look_alike])
    assert _n_samples(zip_path) == (500, 1, "pilot")
    assert _n_samples(diverged) == (510, 0, None)
    assert _n_samples(look_alike) == (20, 0, None)


# -- 4. a discard cut short by a kill -----------------------------------------------------------
DISCARD_THEN_KILLED = """
import shutil, sys, time, types
import numpy as np
from labsession.acquisition import _discard
from labsession.recording import Session, StreamInfo


def stall(path, *args, **kwargs):
    shutil.rmtree(f"{path}/emg.zarr")  # part of it deleted
    print("deleting", path, flush=True)
    time.sleep(600)


session = Session(sys.argv[1])
session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
session.append("emg", np.ones((100, 2), np.float32), np.arange(100) / 100.0)
_discard.shutil = types.SimpleNamespace(rmtree=stall)
_discard.discard_session(session)
"""


def test_a_discard_killed_midway_is_cleaned_up_by_the_next_pack(tmp_path):
    base = tmp_path / "sessions"
    base.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    kept = {
        ".X.discarded": "dir",  # no 8 hex
        ".X.0123ABCD.discarded": "dir",  # not lowercase hex
        ".X.0123abcd.discarded.bak": "dir",
        ".Y.0123abcd.discarded": "link",
        ".Z.89abcdef.discarded": "file",
    }
    for name, kind in kept.items():
        if kind == "dir":
            (base / name).mkdir()
            (base / name / "inside.txt").write_text("kept")
        elif kind == "link":
            (base / name).symlink_to(precious, target_is_directory=True)
        else:
            (base / name).write_text("kept")
    busy = base / ".V.0123abcd.discarded"  # being deleted by a live discard: its lock is held
    busy.mkdir()
    busy_lock = SessionLock(base / "V")
    busy_lock.acquire()

    words = _kill_after_line(DISCARD_THEN_KILLED, str(base))
    assert words[0] == "deleting"
    aside = words[1]
    assert re.fullmatch(r"\..+_[0-9a-f]{8}\.[0-9a-f]{8}\.discarded", os.path.basename(aside))
    assert os.path.isdir(aside)
    assert find_unfinished_sessions(base) == []

    session = Session(base)
    session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    session.append("emg", *_samples(0, 10))
    zip_path = session.pack_to_zip()
    assert not os.path.lexists(aside)
    folder_name = os.path.basename(aside)[1:].rsplit(".", 2)[0]
    assert not os.path.lexists(base / f".{folder_name}.lock")
    assert busy.is_dir()
    assert sorted(os.listdir(base)) == sorted([*kept, busy.name, ".V.lock", zip_path.name])
    assert (precious / "keep.txt").read_text() == "mine"
    assert (base / ".X.discarded" / "inside.txt").read_text() == "kept"

    busy_lock.release()  # that discard ended: the next cleanup deletes its folder
    assert clean_removal_leftovers(base) == [busy]
    assert sorted(os.listdir(base)) == sorted([*kept, zip_path.name])
