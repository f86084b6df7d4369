import hashlib
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from labsession.errors import SessionError
from labsession.recording import open_session_store

from .conftest import outcome_within


def tree_digest(path):
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.fixture
def folder_copy(tmp_path, myogestic_dir):
    dest = tmp_path / "2026-11-22_19-20-00_00000000"
    shutil.copytree(myogestic_dir / "folder", dest)
    return dest


def test_missing_path_and_non_session(tmp_path):
    with pytest.raises(SessionError, match="no such session"):
        open_session_store(tmp_path / "missing")
    with pytest.raises(SessionError, match=r"not a session folder \(no meta.json\)"):
        open_session_store(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SessionError, match="not a session"):
        open_session_store(text)


def test_truncated_zip_is_a_clear_error(tmp_path, myogestic_dir):
    raw = (myogestic_dir / "sample.session.zip").read_bytes()
    broken = tmp_path / "x.session.zip"
    broken.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(
        SessionError,
        match=r"x\.session\.zip: this \.session\.zip is corrupt or truncated: it does not read "
        r"as a zip archive",
    ):
        open_session_store(broken)


def test_corrupt_member_in_zip_named_on_read(tmp_path, myogestic_dir):
    raw = bytearray((myogestic_dir / "sample.session.zip").read_bytes())
    with zipfile.ZipFile(myogestic_dir / "sample.session.zip") as zf:
        info = zf.getinfo("emg.zarr/c/3/0")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 10
    raw[start : start + 20] = bytes(20)
    broken = tmp_path / "y.session.zip"
    broken.write_bytes(bytes(raw))
    with open_session_store(broken) as store, pytest.raises(SessionError, match="stream 'emg'"):
        store.get_continuous("emg")


def test_truncated_chunk_in_folder_named_on_read(folder_copy):
    chunk = folder_copy / "emg.zarr" / "c" / "5" / "0"
    chunk.write_bytes(chunk.read_bytes()[:100])
    with open_session_store(folder_copy) as store:
        with pytest.raises(
            SessionError, match=r"stream 'emg' cannot be read.*truncated or corrupt"
        ):
            store.get_continuous("emg")
        assert store.get_continuous("glove")[0].shape == (2000, 3)


def test_missing_meta_and_bad_meta(folder_copy):
    meta = folder_copy / "meta.json"
    text = meta.read_text()
    meta.write_text("{ not json")
    with pytest.raises(SessionError, match=r"meta\.json is not valid JSON"):
        open_session_store(folder_copy)
    meta.write_text(text.replace('"n_channels": 8', '"n_channels": -8'))
    with pytest.raises(
        SessionError,
        match=r"meta\.json: streams\.emg\.n_channels must be an integer in \[1, 65536\], got -8$",
    ):
        open_session_store(folder_copy)
    meta.write_text(text.replace('"glove"', '"gloves"'))
    with pytest.raises(
        SessionError, match=r"stream 'gloves' is listed in meta\.json but its arrays"
    ):
        open_session_store(folder_copy)
    meta.unlink()
    with pytest.raises(SessionError, match=r"no meta\.json"):
        open_session_store(folder_copy)


def test_unknown_stream_lists_streams(myogestic_session):
    with (
        open_session_store(myogestic_session) as store,
        pytest.raises(KeyError, match=r"\['emg', 'glove'\]"),
    ):
        store.get_continuous("eeg")


def test_zip_with_one_top_level_folder(tmp_path, myogestic_dir):
    nested = tmp_path / "nested.session.zip"
    with (
        zipfile.ZipFile(myogestic_dir / "sample.session.zip") as src,
        zipfile.ZipFile(nested, "w") as dst,
    ):
        for info in src.infolist():
            dst.writestr("2026-11-22_19-20-00/" + info.filename, src.read(info))
    with open_session_store(nested) as a, open_session_store(myogestic_dir / "folder") as b:
        np.testing.assert_array_equal(a.get_continuous("emg")[0], b.get_continuous("emg")[0])
        assert a.label_track == b.label_track


def test_reading_changes_nothing_on_disk(myogestic_session):
    before = tree_digest(myogestic_session)
    with open_session_store(myogestic_session) as store:
        for name in store.stream_names:
            store.get_continuous(name)
            store.get_trials(name, pre=0.1)
    assert tree_digest(myogestic_session) == before


def test_missing_labels_file_means_no_labels(folder_copy):
    (folder_copy / "labels.json").unlink()
    with open_session_store(folder_copy) as store:
        assert store.label_track == []
        assert store.get_trials("emg") == []
    (folder_copy / "labels.json").write_text(json.dumps([{"time": 1}]))
    with pytest.raises(
        SessionError,
        match=r"labels\.json: \[0\]\.timestamp must be a finite number, got missing$",
    ):
        open_session_store(folder_copy)


@pytest.mark.parametrize("name", ["x.session.zip", "session_folder"])
def test_a_named_pipe_is_refused_at_once(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    hang = "open_session_store blocked on a named pipe"
    error = outcome_within(lambda: open_session_store(fifo), 5, hang)
    assert isinstance(error, SessionError)
    assert "named pipe" in str(error)
    assert str(fifo) in str(error)


@pytest.mark.parametrize(
    ("pre", "post"),
    [(float("nan"), 0.0), (0.0, float("nan")), (0.0, float("inf")), (-0.1, 0.0), ("1", 0.0)],
)
def test_get_trials_refuses_pre_or_post_that_is_no_finite_length(myogestic_session, pre, post):
    """NaN and infinity gave wrong trials silently (NaN before the first label: one trial)."""
    key, value = ("pre", pre) if pre != 0.0 else ("post", post)
    with open_session_store(myogestic_session) as store:
        with pytest.raises(
            SessionError, match=rf"get_trials\('emg'\): {key} must be a finite number of seconds"
        ) as error:
            store.get_trials("emg", pre=pre, post=post)
        assert repr(value) in str(error.value)
        assert len(store.get_trials("emg", pre=1e9)) == len(store.get_trials("emg"))
