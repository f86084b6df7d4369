"""The session list's reader and cache, on real session files (no imgui)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from labsession.core.archive import pack_zip
from labsession.recording import Session, StreamInfo
from labsession.testing import record_tiny_session, wait_until
from labsession.widgets._session_index import SessionIndex, read_row

MYOGESTIC = Path(__file__).parent.parent / "data" / "myogestic"


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
