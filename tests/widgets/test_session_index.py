"""The session list's reader, on real session files (no imgui)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from labsession.core.archive import pack_zip
from labsession.errors import SessionError
from labsession.recording import Session, StreamInfo, open_session_store
from labsession.recording._schema import ARRAY_META_MAX_BYTES
from labsession.testing import record_tiny_session, wait_until
from labsession.widgets._session_files import MAX_SMALL_FILE
from labsession.widgets._session_index import SessionIndex, read_row
from labsession.widgets._session_rows import SessionRow

MYOGESTIC = Path(__file__).parent.parent / "data" / "myogestic"


# the sessions folder is tmp_path: the state folder lives elsewhere
pytestmark = pytest.mark.usefixtures("state_dir")


def test_rows_of_a_zip_and_a_folder(tmp_path):
    zip_path, folder = record_tiny_session(tmp_path), record_tiny_session(tmp_path, pack=False)
    rows = {row.name: row for row in SessionIndex(tmp_path).scan()}
    assert set(rows) == {zip_path.name, folder.name}
    packed, unpacked = rows[zip_path.name], rows[folder.name]
    for row in (packed, unpacked):
        assert row.error is None
        assert row.duration_s == pytest.approx(1.0)
        assert [(s.name, s.n_channels, s.fs, s.n_samples) for s in row.streams] == [
            ("emg", 2, 100.0, 100)
        ]
        assert row.class_names == ("Rest", "Fist", "Open")
        assert row.label_counts == {"Rest": 3, "Fist": 1, "Open": 1}
        assert row.n_labels == 5
        assert row.created is not None
        assert abs(time.time() - row.created.timestamp()) < 60
    assert (packed.packed, packed.approximate) == (True, False)
    assert (unpacked.packed, unpacked.approximate) == (False, True)
    assert packed.size_bytes == zip_path.stat().st_size
    assert unpacked.size_bytes == sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_myogestic_sessions_and_a_zip_with_one_top_folder(tmp_path):
    shutil.copytree(MYOGESTIC / "folder", tmp_path / "2026-01-02_03-04-05_0123abcd")
    shutil.copy(MYOGESTIC / "sample.session.zip", tmp_path / "sample.session.zip")
    pack_zip(MYOGESTIC / "folder", tmp_path / "nested.session.zip", prefix="top/")
    rows = {row.name: row for row in SessionIndex(tmp_path).scan()}
    assert all(row.error is None for row in rows.values()), rows
    folder = rows["2026-01-02_03-04-05_0123abcd"]
    for name in ("sample.session.zip", "nested.session.zip"):
        assert rows[name].label_counts == folder.label_counts != {}
        assert rows[name].streams == folder.streams
        assert [s.name for s in folder.streams] == ["emg", "glove"]


def test_unreadable_entries_are_rows_with_the_reason(tmp_path):
    good = record_tiny_session(tmp_path)
    (tmp_path / "truncated.session.zip").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "x.session.zip").write_bytes(os.urandom(3000))
    bad_meta = tmp_path / "2026-01-01_00-00-00_deadbeef"
    bad_meta.mkdir()
    (bad_meta / "meta.json").write_text("{not json")
    (tmp_path / "not_a_session").mkdir()
    no_arrays = tmp_path / "no_arrays"
    no_arrays.mkdir()
    (no_arrays / "meta.json").write_text('{"streams": {"emg": {"n_channels": 2, "fs": 100}}}')
    (tmp_path / "notes.txt").write_text("not listed: neither a folder nor a .session.zip")
    (tmp_path / ".hidden.session.zip.abc.tmp").write_bytes(b"an atomic write in progress")

    rows = {row.name: row for row in SessionIndex(tmp_path).scan()}
    assert set(rows) == {
        good.name,
        "truncated.session.zip",
        "x.session.zip",
        bad_meta.name,
        "not_a_session",
        "no_arrays",
    }
    assert rows[good.name].error is None
    assert "corrupt or truncated" in rows["truncated.session.zip"].error
    assert "corrupt or truncated" in rows["x.session.zip"].error
    assert "meta.json is not valid JSON" in rows[bad_meta.name].error
    assert rows[bad_meta.name].created is not None  # from the folder name
    assert "not a session folder (no meta.json)" in rows["not_a_session"].error
    assert "'emg' is listed in meta.json but emg_timestamps.zarr is missing" in (
        rows["no_arrays"].error
    )
    assert str(tmp_path) not in rows["x.session.zip"].error  # the row names the entry already
    missing = read_row(tmp_path / "gone.session.zip")  # never raises
    assert "No such file" in missing.error


def test_empty_and_missing_base_folders(tmp_path):
    empty = SessionIndex(tmp_path)
    assert (empty.exists, empty.scan(), empty.exists) == (None, [], True)
    missing = SessionIndex(tmp_path / "sessions")
    assert (missing.scan(), missing.exists) == ([], False)
    assert not (tmp_path / "sessions").exists()  # never created


def test_a_second_scan_reads_nothing_unchanged(tmp_path):
    sessions = [
        record_tiny_session(tmp_path),
        record_tiny_session(tmp_path),
        record_tiny_session(tmp_path, pack=False),
    ]
    index = SessionIndex(tmp_path)
    index.scan()
    assert index.reads == 3
    version = index.version
    index.scan()
    assert (index.reads, index.version) == (3, version)
    index.scan(full=True)  # Rescan
    assert index.reads == 6
    later = time.time() + 10
    os.utime(sessions[0], (later, later))  # one zip rewritten
    os.utime(sessions[2] / "labels.json", (later, later))  # a label added to the folder
    index.scan()
    assert index.reads == 8
    sessions[1].unlink()
    assert {row.name for row in index.scan()} == {sessions[0].name, sessions[2].name}
    assert index.reads == 8


def test_new_and_removed_sessions_are_picked_up_by_polling(tmp_path):
    index = SessionIndex(tmp_path, poll_interval=0.05)
    try:

        def listed() -> set[str]:
            index.poll()
            return {row.name for row in index.rows()}

        first = record_tiny_session(tmp_path)
        assert wait_until(lambda: listed() == {first.name}, timeout=5)
        second = record_tiny_session(tmp_path)
        assert wait_until(lambda: listed() == {first.name, second.name}, timeout=5)
        first.unlink()
        assert wait_until(lambda: listed() == {second.name}, timeout=5)
        assert index.reads == 2
        assert index.wait_idle(5)
        assert not index.scanning
    finally:
        index.close()


def test_polling_does_not_rescan_an_unchanged_folder_of_zips(tmp_path):
    record_tiny_session(tmp_path)
    index = SessionIndex(tmp_path, poll_interval=0.0, folder_interval=0.0)
    try:
        index.poll()
        assert index.wait_idle(5)
        version = index.version
        for _ in range(20):
            index.poll()
        assert index.wait_idle(5)
        assert (index.version, index.reads) == (version, 1)
    finally:
        index.close()


def test_a_folder_being_written_is_re_read_without_the_base_folder_changing(tmp_path):
    session = Session(tmp_path, class_names=["Rest", "Fist"])
    session.init_stream("emg", StreamInfo(2, 100.0))
    index = SessionIndex(tmp_path, poll_interval=0.0, folder_interval=0.05)
    try:

        def labels() -> dict[str, int] | None:
            index.poll()
            row = next(iter(index.rows()), None)
            return None if row is None else row.label_counts

        assert wait_until(lambda: labels() == {}, timeout=5)
        base_mtime = tmp_path.stat().st_mtime_ns
        session.add_label(1, timestamp=1.0)  # rewrites labels.json inside the folder
        assert wait_until(lambda: labels() == {"Fist": 1}, timeout=5)
        assert tmp_path.stat().st_mtime_ns == base_mtime
    finally:
        index.close()
        session.close()


# -- hostile entries: each is a row of its own, read in bounded time and memory -------------------
def fifo_in_place_of(path: Path) -> Path:
    """Replace the file ``path`` by a FIFO (a writer that never comes: ``open`` would block)."""
    path.unlink()
    os.mkfifo(path)
    return path


def unblock(fifos: list[Path]) -> None:
    """Open each FIFO for writing, so that a reader still blocked on it (a regression) returns."""
    for fifo in fifos:
        with contextlib.suppress(OSError):  # ENXIO: no reader waiting, as it should be
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_fifos_are_error_rows_and_never_block_the_scan(tmp_path):
    good = record_tiny_session(tmp_path)
    os.mkfifo(tmp_path / "x.session.zip")
    fifos = [tmp_path / "x.session.zip"]
    folders = {
        member: record_tiny_session(tmp_path, pack=False)
        for member in ("meta.json", "labels.json", "emg.zarr/zarr.json")
    }
    fifos += [fifo_in_place_of(folder / member) for member, folder in folders.items()]
    index = SessionIndex(tmp_path)
    try:
        index.request_scan()
        assert index.wait_idle(10), "the scan blocked on a FIFO"
        rows = {row.name: row for row in index.rows()}
    finally:
        unblock(fifos)
        assert index.close(5)
    assert rows[good.name].error is None
    assert rows["x.session.zip"].error == "x.session.zip is a named pipe, not a file"
    for member, folder in folders.items():
        assert rows[folder.name].error == f"{member} is a named pipe, not a file"


STUCK = """
import sys, threading, time
from labsession.widgets._session_index import SessionIndex

index = SessionIndex(sys.argv[1])
index._scan_lock.acquire()  # a scan that never ends, as on a hung network share
index.request_scan()
time.sleep(0.2)
assert index.scanning
start = time.monotonic()
assert not index.close(timeout=0.3)  # bounded: it gives up on the stuck thread
assert time.monotonic() - start < 2
assert not index.close(timeout=0)  # twice is fine
print("exiting", flush=True)
"""


def test_a_stuck_scan_never_keeps_the_interpreter_alive(tmp_path):
    record_tiny_session(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", STUCK, str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "exiting\n"


def test_link_loops_and_links_to_folders_hide_no_session(tmp_path):
    base = tmp_path / "sessions"
    good = record_tiny_session(base)
    elsewhere = record_tiny_session(tmp_path / "share", pack=False)
    (base / "loop").symlink_to("loop")
    (base / "a.session.zip").symlink_to("a.session.zip")
    (base / "linked").symlink_to(elsewhere, target_is_directory=True)
    (base / "dangling").symlink_to(tmp_path / "gone")  # not a session: not listed
    linked_zip = base / "linked.session.zip"
    linked_zip.symlink_to(record_tiny_session(tmp_path / "share"))  # a link to a file is read
    index = SessionIndex(base)
    rows = {row.name: row for row in index.scan()}
    reads = index.reads
    assert set(rows) == {good.name, "loop", "a.session.zip", "linked", linked_zip.name}
    assert rows[good.name].error is None
    assert rows[linked_zip.name].error is None
    assert "Too many levels of symbolic links" in rows["loop"].error
    assert "Too many levels of symbolic links" in rows["a.session.zip"].error
    assert rows["linked"].error.startswith("symbolic link to a folder: not followed")
    assert rows["linked"].size_bytes == 0
    assert read_row(base / "linked").error == rows["linked"].error
    index.scan()
    assert index.reads == reads  # bad entries are not read again


def test_a_huge_sparse_meta_json_is_refused_unread(tmp_path):
    good = record_tiny_session(tmp_path)
    folder = record_tiny_session(tmp_path, pack=False)
    os.truncate(folder / "meta.json", 1 << 30)  # 1 GiB, taking no disk
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = {row.name: row for row in SessionIndex(tmp_path).scan()}
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100 * 1024
    assert rows[good.name].error is None
    assert rows[folder.name].error == (
        f"meta.json is {1 << 30} bytes, more than the {MAX_SMALL_FILE} bytes a session's small "
        f"file may hold: not read"
    )


def rewrite_zip(
    source: Path, target: Path, *, drop: str | None = None, replace: dict[str, bytes] | None = None
) -> Path:
    """Copy the archive ``source`` member by member, without ``drop*`` and with ``replace``."""
    replace = replace or {}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            if drop is None or not info.filename.startswith(drop):
                dst.writestr(info, replace.get(info.filename, src.read(info)))
    return target


def test_zip_members_that_expand_too_far_are_refused(tmp_path):
    good = record_tiny_session(tmp_path)
    ts_meta = "emg_timestamps.zarr/zarr.json"
    big = rewrite_zip(
        good,
        tmp_path / "big.session.zip",
        replace={ts_meta: b" " * (ARRAY_META_MAX_BYTES + 1)},
    )
    lying = rewrite_zip(good, tmp_path / "lying.session.zip", replace={ts_meta: b" " * (20 << 20)})
    raw = bytearray(lying.read_bytes())
    name = ts_meta.encode()
    central = raw.rindex(name) - 46  # the central directory header of the member
    local = raw.index(name) - 30  # its local header
    assert raw[central : central + 4] == b"PK\x01\x02"
    assert raw[local : local + 4] == b"PK\x03\x04"
    raw[central + 24 : central + 28] = (1000).to_bytes(4, "little")  # declares 1000 bytes
    raw[local + 22 : local + 26] = (1000).to_bytes(4, "little")
    lying.write_bytes(bytes(raw))

    rows = {row.name: row for row in SessionIndex(tmp_path).scan()}
    assert rows[good.name].error is None
    assert rows[big.name].error == (
        f"{ts_meta} is {ARRAY_META_MAX_BYTES + 1} bytes, more than the {ARRAY_META_MAX_BYTES} "
        "bytes a session's small file may hold: not read"
    )
    assert "corrupt or truncated" in rows[lying.name].error  # read 1000 bytes, CRC wrong


def test_a_deflated_zip_bomb_is_refused_unread(tmp_path):
    good = record_tiny_session(tmp_path)
    bomb = tmp_path / "bomb.session.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != "emg_timestamps.zarr/zarr.json":
                dst.writestr(info.filename, src.read(info))
        with dst.open("emg_timestamps.zarr/zarr.json", "w", force_zip64=True) as member:
            for _ in range(64):
                member.write(b" " * (1 << 20))
    assert bomb.stat().st_size < 1 << 20  # 64 MiB of metadata in a small file
    row = read_row(bomb)
    assert row.error.startswith(f"emg_timestamps.zarr/zarr.json is {64 << 20} bytes")


def test_arrays_must_match_meta_json(tmp_path):
    source = record_tiny_session(tmp_path / "source")
    base = tmp_path / "sessions"
    base.mkdir()
    data_meta = json.loads(zipfile.ZipFile(source).read("emg.zarr/zarr.json"))

    def with_data_shape(name: str, shape: list[int]) -> Path:
        raw = json.dumps({**data_meta, "shape": shape}).encode()
        return rewrite_zip(source, base / name, replace={"emg.zarr/zarr.json": raw})

    no_data = rewrite_zip(source, base / "no_data.session.zip", drop="emg.zarr/")
    channels = with_data_shape("channels.session.zip", [100, 3])
    short = with_data_shape("short.session.zip", [99, 2])  # read as 99 samples: not an error
    flat = with_data_shape("flat.session.zip", [100])
    folder = record_tiny_session(base, pack=False)
    crashed = record_tiny_session(base, pack=False)  # a write cut short: one sample fewer
    (crashed / "emg.zarr" / "zarr.json").write_text(json.dumps({**data_meta, "shape": [99, 2]}))
    garbage = record_tiny_session(base, pack=False)
    (garbage / "emg.zarr" / "zarr.json").write_text("garbage")

    rows = {row.name: row for row in SessionIndex(base).scan()}
    assert rows[no_data.name].error == "stream 'emg' is listed in meta.json but emg.zarr is missing"
    expected = "meta.json gives stream 'emg' 2 channels: expected (n_samples, 2)"
    assert rows[channels.name].error == f"emg.zarr has shape (100, 3), but {expected}"
    assert rows[flat.name].error == f"emg.zarr has shape (100,), but {expected}"
    assert rows[short.name].error is None
    assert rows[short.name].streams[0].n_samples == 99
    with open_session_store(short) as store:
        assert store.n_samples("emg") == 99
    assert "emg.zarr: unreadable array metadata" in rows[garbage.name].error
    assert rows[folder.name].error is None
    assert rows[crashed.name].error is None
    assert rows[crashed.name].streams[0].n_samples == 99
    with pytest.raises(
        SessionError, match=r"'emg' is listed in meta.json but its arrays cannot be opened"
    ):
        open_session_store(no_data)


@contextlib.contextmanager
def unprivileged():
    """Run the block without root's right to read any file (effective uid ``nobody``) when
    the tests run as root; as another user, permissions already apply."""
    if os.geteuid() != 0:
        yield
        return
    datetime.strptime("2020", "%Y")  # a lazy import, done while its file can still be read
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def shared_tmp():
    """A folder that ``nobody`` can enter (pytest's ``tmp_path`` is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="labsession-"))
    folder.chmod(0o755)
    yield folder
    for sub in [folder, *folder.rglob("*")]:
        if sub.is_dir() and not sub.is_symlink():
            sub.chmod(0o755)
    shutil.rmtree(folder)


def test_denied_folders_never_hide_a_session_and_a_denied_base_says_so(shared_tmp):
    base = shared_tmp
    good, denied = record_tiny_session(base, pack=False), record_tiny_session(base, pack=False)
    packed = record_tiny_session(base)
    for file in base.rglob("*"):  # atomic writes leave 0o600 files: readable by all, as shared
        if file.is_file():
            file.chmod(0o644)
    size = sum(f.stat().st_size for f in good.rglob("*") if f.is_file())
    (good / "extra").mkdir()
    (good / "extra" / "notes.bin").write_bytes(b"\0" * 1000)
    (good / "extra").chmod(0)  # a subfolder we cannot read: the session still can be
    denied.chmod(0)
    index = SessionIndex(base)
    with unprivileged():
        rows = {row.name: row for row in index.scan()}
    assert rows[good.name].error is None
    assert rows[good.name].size_bytes == size  # what could be read
    assert rows[denied.name].error == "cannot be examined (Permission denied)"
    assert rows[packed.name].error is None
    assert index.listing_error is None

    base.chmod(0)
    with unprivileged():
        assert {row.name for row in index.scan()} == set(rows)  # the last listing is kept
    assert index.listing_error == f"cannot list {base}: Permission denied"
    assert index.exists
    base.chmod(0o755)
    index.scan()
    assert index.listing_error is None

    def denied_row() -> SessionRow:
        with unprivileged():
            return {row.name: row for row in index.scan()}[denied.name]

    denied.chmod(0o755)  # readable again, then denied again, then given back: its stamp is the
    assert denied_row().error is None  # same throughout, yet the row follows
    denied.chmod(0)
    assert denied_row().error == "cannot be examined (Permission denied)"
    denied.chmod(0o755)
    assert denied_row().error is None


# -- the rows kept between runs --------------------------------------------------------------------


def test_a_zip_replaced_in_place_is_re_read(tmp_path):
    # `cp other.zip listed.session.zip` keeps the file (and the base folder's mtime): the row
    # kept the old labels and size until Rescan.
    listed = record_tiny_session(tmp_path / "sessions")
    other = record_tiny_session(tmp_path / "elsewhere", class_names=("Up", "Down"))
    index = SessionIndex(tmp_path / "sessions", poll_interval=0.0, packed_interval=0.2)
    try:

        def classes() -> set[str] | None:
            index.poll()
            row = next(iter(index.rows()), None)
            return None if row is None else set(row.label_counts)

        assert wait_until(lambda: classes() == {"Rest", "Fist", "Open"}, timeout=5)
        inode = listed.stat().st_ino
        shutil.copyfile(other, listed)  # in place: the same file, new bytes
        assert listed.stat().st_ino == inode
        assert wait_until(lambda: classes() == {"Up", "Down"}, timeout=5)
    finally:
        index.close()
