"""Real files written by MyoGestic 2.6.2 open in labsession with the same content, and back."""

import hashlib
import json
import zipfile

import numpy as np
import pytest

from labsession.recording import Session, StreamInfo, open_session_store


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def test_streams_labels_and_classes(myogestic_session, myogestic_expected):
    with open_session_store(myogestic_session) as store:
        data, ts = store.get_continuous("emg")
        assert data.shape == (myogestic_expected["n_emg"], 8)
        assert digest(data) == myogestic_expected["emg_sha"]
        assert digest(ts) == myogestic_expected["ts_sha"]
        labels = [[e.timestamp, e.class_index] for e in store.label_track]
        assert labels == myogestic_expected["labels"]
        assert store.class_names == ["Rest", "Fist", "Open"]
        assert store.stream_info("emg") == StreamInfo(8, 1000.0, "float32")
        assert store.stream_info("glove") == StreamInfo(3, 100.0, "float32")
        assert store.app_name == "fixture-app"


def test_trials_equal_myogestic(myogestic_session, myogestic_expected):
    with open_session_store(myogestic_session) as store:
        # MyoGestic names trials by index unless class names are passed: ask for that.
        trials = store.get_trials("emg", pre=0.1, post=0.1, class_names=[])
    expected = myogestic_expected["trials_pre01_post01"]
    assert len(trials) == len(expected)
    for trial, (cls, name, shape, sha, first, last) in zip(trials, expected, strict=True):
        assert (trial.class_index, trial.class_name, list(trial.data.shape)) == (cls, name, shape)
        assert digest(trial.data.astype(np.float32)) == sha
        assert trial.ts[0] == pytest.approx(first, abs=1e-9)
        assert trial.ts[-1] == pytest.approx(last, abs=1e-9)


def test_trials_named_by_session_class_names_by_default(myogestic_dir):
    with open_session_store(myogestic_dir / "folder") as store:
        names = [t.class_name for t in store.get_trials("emg")]
    assert names[:4] == ["Rest", "Fist", "Rest", "Open"]


def test_folder_and_zip_identical(myogestic_dir):
    with (
        open_session_store(myogestic_dir / "folder") as a,
        open_session_store(myogestic_dir / "sample.session.zip") as b,
    ):
        for name in ("emg", "glove"):
            for x, y in zip(a.get_continuous(name), b.get_continuous(name), strict=True):
                np.testing.assert_array_equal(x, y)
        assert a.label_track == b.label_track
        assert not a.is_packed
        assert b.is_packed


def test_labsession_files_use_myogestic_layout_and_codecs(tmp_path, myogestic_dir):
    """Same array metadata (codecs, chunking, key encoding) and meta keys as MyoGestic writes."""
    session = Session(tmp_path, app_name="a", class_names=["Rest", "Fist", "Open"])
    session.init_stream("emg", StreamInfo(8, 1000.0))
    session.append("emg", np.ones((2500, 8), np.float32), 1000 + np.arange(2500) / 1000)
    zip_path = session.pack_to_zip()

    with (
        zipfile.ZipFile(zip_path) as ours,
        zipfile.ZipFile(myogestic_dir / "sample.session.zip") as ref,
    ):
        assert {"meta.json", "labels.json"} <= set(ours.namelist())
        for member in ("emg.zarr/zarr.json", "emg_timestamps.zarr/zarr.json"):
            mine, theirs = json.loads(ours.read(member)), json.loads(ref.read(member))
            for key in ("data_type", "chunk_key_encoding", "zarr_format", "node_type"):
                assert mine[key] == theirs[key], key
            # The same codecs, plus zstd's content checksum (a flag plain zstd readers honour).
            zstd = mine["codecs"][1]["configuration"]
            assert zstd.pop("checksum") is True
            assert theirs["codecs"][1]["configuration"].pop("checksum") is False
            assert mine["codecs"] == theirs["codecs"]
            assert mine["chunk_grid"] == theirs["chunk_grid"]
        ref_meta, meta = json.loads(ref.read("meta.json")), json.loads(ours.read("meta.json"))
        for key in ("schema_version", "app_name", "created", "streams", "class_names"):
            assert key in meta
        assert meta["schema_version"] == ref_meta["schema_version"]
        ref_stream = {k: v for k, v in ref_meta["streams"]["emg"].items() if k != "channel_grids"}
        assert meta["streams"]["emg"] == ref_stream
        assert all(i.compress_type == zipfile.ZIP_STORED for i in ours.infolist())
