"""A recording process killed with SIGKILL leaves a readable session: every label, <= ~1 s lost."""

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from labsession.core.archive import pack_zip
from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo, open_session_store
from labsession.recording._preflight import find_unfinished_sessions
from labsession.testing import wait_until

FS = 1000.0
RECORDER = """
import sys, time
import numpy as np
from labsession.recording import Session, StreamInfo

session = Session(sys.argv[1], class_names=["Rest", "Fist"])
session.init_stream("emg", StreamInfo(4, {fs}))
print("path", session.path, flush=True)
start, sent = time.monotonic(), 0
while True:
    due = int((time.monotonic() - start) * {fs})
    while sent + 64 <= due:
        index = np.arange(sent, sent + 64)
        data = (index[:, None] * 4 + np.arange(4)).astype(np.float32)
        session.append("emg", data, 50 + index / {fs})
        sent += 64
        print("samples", sent, flush=True)
        if sent % 512 == 0:
            event = session.add_label(sent // 512 % 2, timestamp=50 + sent / {fs})
            print("label", event.timestamp, event.class_index, flush=True)
    time.sleep(0.002)
"""


@pytest.mark.slow
def test_sigkill_loses_at_most_last_second_and_no_label(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDER.format(fs=FS), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    folder, appended, labels = None, 0, []
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            kind, *rest = line.split()
            if kind == "path":
                folder = rest[0]
            elif kind == "samples":
                appended = int(rest[0])
            elif kind == "label":
                labels.append((float(rest[0]), int(rest[1])))
            if appended >= 3.5 * FS or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert appended >= 3.5 * FS, "recorder did not produce data in time"

    with open_session_store(folder) as store:
        assert [(e.timestamp, e.class_index) for e in store.label_track][: len(labels)] == labels
        data, ts = store.get_continuous("emg")
    # Everything on disk is exactly what was appended, in order, with no invented samples...
    index = np.arange(len(ts))
    np.testing.assert_array_equal(data, (index[:, None] * 4 + np.arange(4)).astype(np.float32))
    np.testing.assert_array_equal(ts, 50 + index / FS)
    # ...and at most the last unflushed second (plus one write in flight) is missing.
    assert len(ts) >= appended - 1.5 * FS

    session = Session.attach(folder)
    zip_path = session.pack_to_zip()
    with open_session_store(zip_path) as packed:
        assert packed.n_samples("emg") == len(ts)
        assert len(packed.label_track) >= len(labels)


def test_unclosed_session_is_written_at_interpreter_exit(tmp_path):
    script = (
        "import sys, numpy as np\n"
        "from labsession.recording import Session, StreamInfo\n"
        "s = Session(sys.argv[1])\n"
        "s.init_stream('emg', StreamInfo(2, 1000.0))\n"
        "s.append('emg', np.ones((300, 2), np.float32), np.arange(300) / 1000)\n"
        "print(s.path)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    with open_session_store(out.stdout.strip()) as store:
        assert store.n_samples("emg") == 300  # less than a chunk, never flushed by the script


PACKER = """
import sys
from labsession.recording import Session

Session.attach(sys.argv[1]).pack_to_zip()
print("packed", flush=True)
"""


def _listing(folder):
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _decoys(base):
    """Files beside the session that no cleanup may touch: the user's, another session's."""
    decoys = {
        base / "notes.txt": b"mine",
        base / ".2026-01-01_00-00-00_aaaaaaaa.session.zip.0123abcd.tmp": b"another pack",
    }
    for path, content in decoys.items():
        path.write_bytes(content)
    (base / ".2026-01-01_00-00-00_bbbbbbbb.removing").mkdir()  # no zip: must be kept
    return decoys


def _check_decoys(base, decoys):
    for path, content in decoys.items():
        assert path.read_bytes() == content
    assert (base / ".2026-01-01_00-00-00_bbbbbbbb.removing").is_dir()


@pytest.mark.slow
def test_sigkill_during_pack_keeps_the_folder_and_the_next_attach_cleans_up(tmp_path):
    # 15 MB that zstd cannot shrink: the zip takes long enough (~0.3 s) to be caught being
    # written by a poll every 0.5 ms.
    rng = np.random.default_rng(0)
    data = rng.standard_normal((120_000, 32)).astype(np.float32)
    ts = 10 + np.arange(len(data)) / 1000.0
    session = Session(tmp_path, class_names=["a", "b"], buffer_seconds=200)
    session.init_stream("emg", StreamInfo(32, 1000.0))
    for start in range(0, len(data), 20_000):
        session.append("emg", data[start : start + 20_000], ts[start : start + 20_000])
    session.add_label(1, timestamp=20.0)
    session.close()
    folder = session.path
    before = _listing(folder)
    decoys = _decoys(tmp_path)

    proc = subprocess.Popen([sys.executable, "-c", PACKER, str(folder)], stdout=subprocess.PIPE)
    temp_pattern = f".{folder.name}.session.zip.*.tmp"
    try:
        seen = wait_until(lambda: any(tmp_path.glob(temp_pattern)), timeout=60, interval=0.0005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert seen, "the packer never started its zip"
    zip_path = tmp_path / (folder.name + ".session.zip")
    assert not zip_path.exists(), "killed too late: the pack had finished"
    assert len(list(tmp_path.glob(temp_pattern))) == 1  # the leftover of the killed pack
    assert _listing(folder) == before

    resumed = Session.attach(folder)
    assert not list(tmp_path.glob(temp_pattern))
    _check_decoys(tmp_path, decoys)
    assert resumed.pack_to_zip() == zip_path
    with open_session_store(zip_path) as store:
        got, got_ts = store.get_continuous("emg")
        assert [(e.timestamp, e.class_index) for e in store.label_track] == [(20.0, 1)]
    np.testing.assert_array_equal(got, data)
    np.testing.assert_array_equal(got_ts, ts)
    _check_decoys(tmp_path, decoys)


REMOVER = """
import shutil, sys, time
from pathlib import Path
from labsession.recording import Session

real_rmtree = shutil.rmtree


def half_then_stall(path, *args, **kwargs):
    # Delete part of the folder for real, then stall: the test kills us mid-removal.
    real_rmtree(Path(path) / "emg.zarr")
    print("half-removed", path, flush=True)
    time.sleep(600)


shutil.rmtree = half_then_stall
Session.attach(sys.argv[1]).pack_to_zip()
"""


@pytest.mark.slow
def test_sigkill_during_folder_removal_leaves_no_half_folder_under_the_session_name(tmp_path):
    session = Session(tmp_path, class_names=["a"])
    session.init_stream("emg", StreamInfo(2, 100.0))
    session.append("emg", np.ones((250, 2), np.float32), np.arange(250) / 100.0)
    session.add_label(0, timestamp=0.5)
    session.close()
    folder = session.path
    decoys = _decoys(tmp_path)

    proc = subprocess.Popen(
        [sys.executable, "-c", REMOVER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        aside = tmp_path / f".{folder.name}.removing"
        assert line.split() == ["half-removed", str(aside)]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()

    # No half-removed folder carries the session's name; the zip holds everything.
    assert not folder.exists()
    assert aside.is_dir()
    assert not (aside / "emg.zarr").exists()
    zip_path = tmp_path / (folder.name + ".session.zip")
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") == 250
        assert [e.class_index for e in store.label_track] == [0]
    with pytest.raises(SessionError, match="packed already"):
        Session.attach(folder)  # what a user would try; it also finishes the removal
    assert not aside.exists()
    assert not (tmp_path / f".{folder.name}.lock").exists()
    _check_decoys(tmp_path, decoys)
    visible = {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert visible == {"notes.txt", zip_path.name}


ZIPPED_THEN_KILLED = """
import sys, time
from labsession.recording import Session, _session


def stall(folder):
    # The zip is in place, verified; the folder not yet removed: the test kills us here.
    print("zipped", folder, flush=True)
    time.sleep(600)


_session.remove_folder_aside = stall
Session.attach(sys.argv[1]).pack_to_zip()
"""


def _recorded(base):
    session = Session(base, class_names=["a", "b"])
    session.init_stream("emg", StreamInfo(2, 100.0))
    data = np.arange(500, dtype=np.float32).reshape(250, 2)
    session.append("emg", data, 5 + np.arange(250) / 100.0)
    session.add_label(1, timestamp=5.5)
    session.close()
    return session.path, session.path.with_name(session.path.name + ".session.zip"), data


def _zipped_beside(base):
    """The state a kill between the zip's rename and the folder's removal leaves: both whole
    (the test above makes it with a real SIGKILL; this is the same files, made faster)."""
    folder, zip_path, data = _recorded(base)
    pack_zip(folder, zip_path)
    return folder, zip_path, data


def test_sigkill_after_the_zip_before_the_folder_removal_is_finished_by_the_next_pack(tmp_path):
    folder, zip_path, data = _recorded(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", ZIPPED_THEN_KILLED, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().split() == ["zipped", str(folder)]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert folder.is_dir()
    assert zip_path.is_file()
    decoys = _decoys(tmp_path)
    assert find_unfinished_sessions(tmp_path) == [folder]

    # The folder is the source: it is packed again, replacing the zip, then removed.
    assert Session.attach(folder).pack_to_zip() == zip_path
    assert not folder.exists()
    with open_session_store(zip_path) as store:
        got, ts = store.get_continuous("emg")
        assert [(e.timestamp, e.class_index) for e in store.label_track] == [(5.5, 1)]
    np.testing.assert_array_equal(got, data)
    np.testing.assert_array_equal(ts, 5 + np.arange(250) / 100.0)
    assert find_unfinished_sessions(tmp_path) == []
    _check_decoys(tmp_path, decoys)
    visible = {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert visible == {"notes.txt", zip_path.name}
    assert not (tmp_path / f".{folder.name}.lock").exists()


def _listing_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_zip_beside_the_folder_is_replaced_by_a_pack_of_the_folder(tmp_path):
    """As MyoGestic does, the folder is the source: an earlier pack of it is replaced (one it
    holds in full; tests/recording/test_pack_replace_safety.py has the zips that are not)."""
    folder, zip_path, data = _zipped_beside(tmp_path)

    # More samples recorded after the zip was made: the new zip holds them.
    session = Session.attach(folder)
    session.append("emg", data[:10], 8 + np.arange(10) / 100.0)
    assert session.pack_to_zip() == zip_path
    assert not folder.exists()
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") == 260

    # A file the zip does not hold (a user's note put in the folder) goes into the new zip.
    folder, zip_path, data = _zipped_beside(tmp_path / "note")
    (folder / "notes.txt").write_text("observations")
    Session.attach(folder).pack_to_zip()
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.read("notes.txt") == b"observations"

    # A zip whose labels do not read back (one flipped bit) may hold labels the folder lacks:
    # it is not replaced, and nothing changes.
    folder, zip_path, _ = _zipped_beside(tmp_path / "flip")
    raw = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as zf:
        header = zf.getinfo("labels.json").header_offset
    name_len, extra_len = struct.unpack("<HH", raw[header + 26 : header + 30])
    raw[header + 30 + name_len + extra_len + 2] ^= 0x01  # inside the member's data
    zip_path.write_bytes(bytes(raw))
    before = _listing_bytes(folder)
    with pytest.raises(SessionError, match=r"is in the way: it cannot be read as a session"):
        Session.attach(folder).pack_to_zip()
    assert zip_path.read_bytes() == bytes(raw)
    assert _listing_bytes(folder) == before

    # A link in place of the zip: replaced by the zip, never followed (its target is kept).
    folder, zip_path, _ = _zipped_beside(tmp_path / "link")
    real = zip_path.rename(zip_path.with_name("elsewhere.zip"))
    real_bytes = real.read_bytes()
    zip_path.symlink_to(real)
    Session.attach(folder).pack_to_zip()
    assert not zip_path.is_symlink()
    assert zip_path.is_file()
    assert real.read_bytes() == real_bytes

    # A folder in place of the zip cannot be replaced: refused, both kept, no temporary file.
    folder, zip_path, _ = _recorded(tmp_path / "dir")
    zip_path.mkdir()
    (zip_path / "keep.txt").write_text("mine")
    before = _listing_bytes(folder)
    with pytest.raises(SessionError, match=r"packing into .*\.session\.zip failed.*folder is kept"):
        Session.attach(folder).pack_to_zip()
    assert _listing_bytes(folder) == before
    assert (zip_path / "keep.txt").read_text() == "mine"
    assert not list((tmp_path / "dir").glob(".*.tmp"))


def test_attach_removes_only_regular_temporary_files_and_keeps_look_alikes(tmp_path):
    folder, _, data = _recorded(tmp_path)
    uuid = "0123456789abcdef0123456789abcdef"
    leftovers = [folder / f".meta.json.{uuid[:8]}.tmp", folder / f"emg.zarr/c/0/0.{uuid}.partial"]
    for path in leftovers:
        path.write_bytes(b"half a write")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    look_alikes = {
        folder / f"emg.zarr/c/0/1.{uuid}.partial": "dir",
        folder / f"emg.zarr/c/0/2.{uuid}.partial": "link",
        folder / f"emg_timestamps.zarr/c/3.{uuid}.partial": "fifo",
        folder / "emg.zarr/notes.partial": "file",  # not the form zarr writes
    }
    for path, kind in look_alikes.items():
        if kind == "dir":
            path.mkdir()
            (path / "inside").write_text("kept")
        elif kind == "link":
            path.symlink_to(notes)
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.write_text("kept")

    session = Session.attach(folder)
    assert [p for p in leftovers if os.path.lexists(p)] == []
    assert all(os.path.lexists(p) for p in look_alikes)
    assert (folder / f"emg.zarr/c/0/1.{uuid}.partial/inside").read_text() == "kept"
    assert notes.read_text() == "mine"
    np.testing.assert_array_equal(session.get_continuous("emg")[0], data)
    session.close()


APPENDER = """
import sys, time
import numpy as np
from labsession.recording import Session

session = Session.attach(sys.argv[1])
print("attached", flush=True)
sent = int(sys.argv[2])
start, first = time.monotonic(), sent
while True:
    due = first + int((time.monotonic() - start) * {fs})
    while sent + 64 <= due:
        index = np.arange(sent, sent + 64)
        data = (index[:, None] * 4 + np.arange(4)).astype(np.float32)
        session.append("emg", data, 50 + index / {fs})
        sent += 64
        print("samples", sent, flush=True)
    time.sleep(0.002)
"""


def _record_then_kill(script, *args, samples):
    """Run ``script`` until it says it appended ``samples``, then SIGKILL it; returns the
    folder (its ``path`` line, else ``args[0]``) and the samples it said it appended."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script.format(fs=FS), *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
    )
    folder, appended = args[0], 0
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            kind, *rest = line.split()
            if kind == "path":
                folder = rest[0]
            elif kind == "samples":
                appended = int(rest[0])
            if appended >= samples or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert appended >= samples, "the process did not append in time"
    return Path(folder), appended


def _attributes(folder, array):
    return json.loads((Path(folder) / array / "zarr.json").read_text())["attributes"]


def _closed_rows(folder):
    return [
        _attributes(folder, array).get("labsession", {}).get("closed_rows")
        for array in ("emg.zarr", "emg_timestamps.zarr")
    ]


def _expected(n):
    index = np.arange(n)
    return (index[:, None] * 4 + np.arange(4)).astype(np.float32), 50 + index / FS


@pytest.mark.slow
def test_a_killed_recording_reads_as_the_shorter_session_it_is(tmp_path):
    """A crash leaves no record of the rows the stream was closed with, so its lost last
    second reads as a shorter session, never as damage; the close that finishes it records its
    rows, and from then on a lost end is damage."""
    folder, appended = _record_then_kill(RECORDER, tmp_path, samples=2.5 * FS)
    assert _closed_rows(folder) == [None, None]
    with open_session_store(folder) as store:
        data, ts = store.get_continuous("emg")
    n = len(ts)
    assert appended - 1.5 * FS <= n <= appended
    expected_data, expected_ts = _expected(n)
    np.testing.assert_array_equal(data, expected_data)
    np.testing.assert_array_equal(ts, expected_ts)

    zip_path = Session.attach(folder).pack_to_zip()  # what Finish does
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") == n
    lost = tmp_path / "lost_end.session.zip"  # the zip copied but for its last timestamp chunk
    last = f"emg_timestamps.zarr/c/{(n - 1) // int(FS)}"
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(lost, "w") as dst:
        for info in src.infolist():
            if info.filename != last:
                dst.writestr(info, src.read(info))
    with (
        open_session_store(lost) as store,
        pytest.raises(SessionError, match=rf"closed with {n} rows .* {last} is missing"),
    ):
        store.n_samples("emg")


@pytest.mark.slow
def test_a_closed_session_killed_while_appending_after_attach_reads_as_the_longer_crash(
    tmp_path,
):
    """Attach removes the record before any row is appended: a crash while appending then
    reads as the session it left (longer than the one closed), not against the old count."""
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(4, FS))
    session.append("emg", *_expected(1500))
    session.close()
    assert _closed_rows(session.path) == [1500, 1500]
    folder, appended = _record_then_kill(APPENDER, session.path, 1500, samples=1500 + 2.5 * FS)
    assert _closed_rows(folder) == [None, None]
    with open_session_store(folder) as store:
        data, ts = store.get_continuous("emg")
    n = len(ts)
    assert appended - 1.5 * FS <= n <= appended
    expected_data, expected_ts = _expected(n)
    np.testing.assert_array_equal(data, expected_data)
    np.testing.assert_array_equal(ts, expected_ts)
    with Session.attach(folder):
        pass
    assert _closed_rows(folder) == [n, n]
