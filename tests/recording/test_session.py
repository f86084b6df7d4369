import json
import re
import threading
import time
import zipfile

import numpy as np
import pytest

from labsession.errors import ArchiveError, SessionError
from labsession.recording import LabelEvent, Session, StreamInfo, open_session_store
from labsession.recording._arrays import valid_length
from labsession.recording._integrity_record import KEEP_EACH_END, StreamIntegrity
from labsession.recording._layout import write_labels
from labsession.recording._schema import MAX_LABELS
from labsession.testing import wait_until

FOLDER_NAME = re.compile(r"^\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{8}$")


def ramp(start, n, n_channels, fs=1000.0):
    """Samples whose value encodes their index, so order and completeness are checkable."""
    index = np.arange(start, start + n)
    data = (index[:, None] * 10 + np.arange(n_channels)).astype(np.float32)
    return data, 100.0 + index / fs


def test_folder_name_and_meta_written_at_once(tmp_path):
    a, b = Session(tmp_path), Session(tmp_path)
    assert a.path != b.path
    assert FOLDER_NAME.match(a.path.name)
    meta = json.loads((a.path / "meta.json").read_text())
    assert meta["streams"] == {}
    a.init_stream("emg", StreamInfo(4, 500.0, channel_names=list("abcd")))
    meta = json.loads((a.path / "meta.json").read_text())
    assert meta["schema_version"] == 3
    assert meta["streams"]["emg"] == {
        "n_channels": 4,
        "fs": 500.0,
        "dtype": "float32",
        "channel_names": ["a", "b", "c", "d"],
    }
    a.close()
    b.close()


@pytest.mark.parametrize(
    ("data", "ts", "message"),
    [
        (np.zeros((5, 3), np.float32), np.arange(5.0), r"shape \(n_samples, 4\), got \(5, 3\)"),
        (np.zeros(5, np.float32), np.arange(5.0), r"got \(5,\)"),
        (np.zeros((5, 4), np.float32), np.arange(4.0), r"timestamps must have shape \(5,\)"),
        (np.zeros((5, 4), np.float32), np.array([0, 1, np.nan, 3, 4.0]), "NaN"),
        (np.zeros((5, 4), np.complex64), np.arange(5.0), "complex64 cannot be stored as float32"),
    ],
)
def test_bad_append_raises_naming_stream_and_writes_nothing(tmp_path, data, ts, message):
    with Session(tmp_path) as session:
        session.init_stream("emg", StreamInfo(4, 1000.0))
        with pytest.raises(ValueError, match=message) as info:
            session.append("emg", data, ts)
        assert "'emg'" in str(info.value)
        session.flush()
        assert session.n_samples("emg") == 0


def test_int16_stream_refuses_float_data(tmp_path):
    with Session(tmp_path) as session:
        session.init_stream("raw", StreamInfo(2, 100.0, dtype="int16"))
        with pytest.raises(ValueError, match="float64 cannot be stored as int16"):
            session.append("raw", np.zeros((3, 2)), np.arange(3.0))
        session.append("raw", np.ones((3, 2), np.int8), np.arange(3.0))
        data, _ = session.get_continuous("raw")
    assert data.dtype == np.int16
    assert data.tolist() == [[1, 1]] * 3


def test_unknown_stream_and_bad_names(tmp_path):
    with Session(tmp_path) as session:
        session.init_stream("emg", StreamInfo(1, 10.0))
        with pytest.raises(KeyError, match=r"no stream named 'eeg'.*\['emg'\]"):
            session.append("eeg", np.zeros((1, 1)), [0.0])
        with pytest.raises(ValueError, match="clash"):
            session.init_stream("emg_timestamps", StreamInfo(1, 10.0))
        with pytest.raises(ValueError, match="not usable as a file name"):
            session.init_stream("../evil", StreamInfo(1, 10.0))
        with pytest.raises(ValueError, match="already initialised"):
            session.init_stream("emg", StreamInfo(1, 10.0))


def test_threads_append_to_streams_concurrently_in_order(tmp_path):
    n_streams, n_blocks, block = 4, 150, 64
    with Session(tmp_path) as session:
        for k in range(n_streams):
            session.init_stream(f"s{k}", StreamInfo(3 + k, 1000.0))

        def produce(k):
            for i in range(n_blocks):
                session.append(f"s{k}", *ramp(i * block, block, 3 + k))

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(n_streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k in range(n_streams):
            data, ts = session.get_continuous(f"s{k}")
            expected_data, expected_ts = ramp(0, n_blocks * block, 3 + k)
            np.testing.assert_array_equal(data, expected_data)
            np.testing.assert_array_equal(ts, expected_ts)


def test_writes_whole_chunks_and_partial_after_latency(tmp_path):
    with Session(tmp_path) as session:
        session.init_stream("emg", StreamInfo(2, 1000.0))
        session.append("emg", *ramp(0, 2500, 2))
        deadline = time.monotonic() + 5
        # Two whole chunks go out at once; the half chunk follows within ~1 s.
        while session.n_samples("emg") < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.n_samples("emg") >= 2000
        while session.n_samples("emg") < 2500 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert session.n_samples("emg") == 2500


def test_full_buffer_blocks_append_instead_of_dropping(tmp_path, caplog):
    with Session(tmp_path, buffer_seconds=0.05) as session:
        session.init_stream("emg", StreamInfo(2, 1000.0))
        for i in range(200):
            session.append("emg", *ramp(i * 64, 64, 2))
        data, _ = session.get_continuous("emg")
    np.testing.assert_array_equal(data, ramp(0, 200 * 64, 2)[0])
    assert any("append blocks" in r.getMessage() for r in caplog.records)


def test_labels_on_disk_in_time_order_before_return(tmp_path):
    with Session(tmp_path) as session:
        session.add_label(1, timestamp=5.0)
        on_disk = json.loads((session.path / "labels.json").read_text())
        assert on_disk == [{"timestamp": 5.0, "class_index": 1}]
        session.add_label(0, timestamp=2.0)
        session.add_label(-1, timestamp=9.0)
        on_disk = json.loads((session.path / "labels.json").read_text())
        assert [e["timestamp"] for e in on_disk] == [2.0, 5.0, 9.0]
        event = session.add_label(2)
        assert event.timestamp > 0
        with pytest.raises(ValueError, match="class_index"):
            session.add_label(-2, timestamp=1.0)
    assert session.label_track[:3] == [LabelEvent(2.0, 0), LabelEvent(5.0, 1), LabelEvent(9.0, -1)]


def test_every_read_of_a_live_session_sees_every_sample_appended(tmp_path):
    """Reads flush first (the writer holds a part chunk back for up to a second), as
    MyoGestic's reads do; after close they read what is on disk."""
    with Session(tmp_path, class_names=["Rest", "Fist"]) as session:
        session.init_stream("emg", StreamInfo(n_channels=2, fs=1000.0))  # chunks of 1 s
        session.add_label(0, timestamp=0.0)
        session.add_label(1, timestamp=0.25)
        data, ts = ramp(0, 500, 2)
        session.append("emg", data, ts - 100.0)  # half a chunk: not written for a second
        trials = session.get_trials("emg")
        assert [(t.class_name, t.data.shape) for t in trials] == [
            ("Rest", (2, 250)),
            ("Fist", (2, 250)),
        ]
        session.append("emg", *ramp(500, 100, 2))
        np.testing.assert_array_equal(
            session.get_timestamps("emg")[500:], 100.0 + 0.5 + np.arange(100) / 1000
        )
        session.append("emg", *ramp(600, 100, 2))
        assert session.n_samples("emg") == 700
        session.append("emg", *ramp(700, 100, 2))
        np.testing.assert_array_equal(session.read_rows("emg", 700, 800), ramp(700, 100, 2)[0])
    assert session.n_samples("emg") == 800
    np.testing.assert_array_equal(session.get_continuous("emg")[0][:500], data)


def test_save_meta_and_closed_session(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(1, 10.0))
    session.save_meta("my-app", ["Rest", "Fist"])
    meta = json.loads((session.path / "meta.json").read_text())
    assert (meta["app_name"], meta["class_names"]) == ("my-app", ["Rest", "Fist"])
    session.close()
    with pytest.raises(SessionError, match="closed"):
        session.append("emg", np.zeros((1, 1)), [0.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_names": range(3)}, r"class_names\[0\] must be a string, got 0"),
        ({"class_names": "Rest,Fist"}, r"class_names must be a list of strings, got the string"),
        ({"class_names": ["Rest", "\udcff"]}, r"class_names\[1\] must be valid Unicode text"),
        ({"class_names": 3}, r"class_names must be a list of strings, got 3"),
        ({"app_name": 5}, r"app_name must be a string, got 5"),
        ({"app_name": "x\ud800"}, r"app_name must be valid Unicode text"),
    ],
    ids=["range", "one string", "lone surrogate", "a number", "int app_name", "surrogate app"],
)
def test_meta_values_its_readers_refuse_are_refused_before_the_folder_exists(
    tmp_path, kwargs, message
):
    """A session that could not be opened or packed afterwards is never started."""
    with pytest.raises(SessionError, match=message) as error:
        Session(tmp_path / "base", **kwargs)
    assert str(tmp_path / "base") in str(error.value)
    assert not (tmp_path / "base").exists()


def test_class_names_and_app_name_changed_later_are_checked_too(tmp_path):
    session = Session(tmp_path, app_name="rig", class_names=("Rest", "Fist"))
    session.init_stream("emg", StreamInfo(1, 10.0))
    before = (session.path / "meta.json").read_bytes()
    with pytest.raises(SessionError, match=r"meta.json: class_names must be a list of strings"):
        session.save_meta("other", "Rest,Fist", control_space={"dofs": ["grip"]})
    assert (session.path / "meta.json").read_bytes() == before
    assert (session.app_name, session.class_names, session.control_space) == (
        "rig",
        ["Rest", "Fist"],
        None,
    )
    with pytest.raises(SessionError, match=r"class_names\[0\] must be a string, got 1"):
        session.class_names = [1, 2]
    with pytest.raises(SessionError, match=r"app_name must be a string, got 7"):
        session.app_name = 7
    session.app_name = None  # no name, as the readers take a null app_name
    assert session.app_name == ""
    session.class_names = ("Rest", "Open")  # a tuple is a list of names
    session.app_name = "rig-2"
    zip_path = session.pack_to_zip()
    with open_session_store(zip_path) as store:
        assert (store.app_name, store.class_names) == ("rig-2", ["Rest", "Open"])


def test_a_label_its_readers_refuse_is_not_added(tmp_path):
    session = Session(tmp_path, class_names=["Rest", "Fist"])
    session.init_stream("emg", StreamInfo(2, 100.0))
    session.append("emg", np.zeros((300, 2), np.float32), np.arange(300) / 100)
    highest = session.add_label(2**31 - 1, timestamp=1.0)  # the highest a reader accepts
    for index, value in [(2**31, "2147483648"), (1.5, "1.5"), ("1", "'1'"), (True, "True")]:
        with pytest.raises(
            SessionError,
            match=rf"labels.json: label class_index must be an integer in \[-1, 2147483647\], "
            rf"got {value}; the label is not added",
        ) as error:
            session.add_label(index, timestamp=2.0)
        assert str(session.path) in str(error.value)
    with pytest.raises(SessionError, match=r"label timestamp must be a finite number, got nan"):
        session.add_label(0, timestamp=float("nan"))
    assert session.add_label(np.float64(1.0), timestamp=2.0) == LabelEvent(2.0, 1)
    assert session.label_track == [highest, LabelEvent(2.0, 1)]
    with open_session_store(session.pack_to_zip()) as store:
        assert store.label_track == [LabelEvent(1.0, 2**31 - 1), LabelEvent(2.0, 1)]


def test_a_label_beyond_the_most_its_readers_accept_is_not_added(tmp_path):
    """labels.json holds at most 50,000 labels (readers refuse more): the next is refused, and
    the session still packs and opens."""
    session = Session(tmp_path)
    session.close()
    full = [LabelEvent(float(i), i % 3) for i in range(MAX_LABELS)]
    write_labels(session.path, full)
    with Session.attach(session.path) as attached:
        with pytest.raises(SessionError, match=r"has 50000 labels, the most its readers accept"):
            attached.add_label(1, timestamp=1e6)
        zip_path = attached.pack_to_zip()
    with open_session_store(zip_path) as store:
        assert len(store.label_track) == MAX_LABELS


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ("ab", r"channel_names must be a list of 2 strings, got the string 'ab'"),
        (["a", "\ud800"], r"channel_names\[1\] must be valid Unicode text"),
    ],
)
def test_channel_names_its_readers_refuse_are_refused(names, message):
    with pytest.raises(SessionError, match=message):
        StreamInfo(2, 100.0, channel_names=names)
    assert StreamInfo(2, 100.0, channel_names=[0, 1]).channel_names == ("0", "1")


def test_pack_verifies_and_removes_folder(tmp_path):
    session = Session(tmp_path, class_names=["a"])
    session.init_stream("emg", StreamInfo(3, 200.0))
    session.append("emg", *ramp(0, 1000, 3, fs=200.0))
    session.add_label(0, timestamp=100.0)
    folder = session.path
    zip_path = session.pack_to_zip()
    assert zip_path == folder.with_name(folder.name + ".session.zip") == session.path
    assert not folder.exists()
    assert not list(tmp_path.glob(".*"))
    with zipfile.ZipFile(zip_path) as zf:
        assert "meta.json" in zf.namelist()
    with open_session_store(zip_path) as store:
        np.testing.assert_array_equal(store.get_continuous("emg")[0], ramp(0, 1000, 3, fs=200.0)[0])
    with pytest.raises(SessionError, match="already packed"):
        session.pack_to_zip()


def test_failed_pack_keeps_folder_and_removes_zip(tmp_path, monkeypatch):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(3, 200.0))
    session.append("emg", *ramp(0, 500, 3))
    session.add_label(0, timestamp=100.0)
    folder = session.path

    def tampered(self, zip_path, expected):  # the archive no longer matches the recording
        raise ArchiveError(f"{zip_path}: stream 'emg' has shape (1, 3) in the archive")

    monkeypatch.setattr(Session, "_verify_packed", tampered)
    with pytest.raises(ArchiveError, match="shape"):
        session.pack_to_zip()
    assert folder.is_dir()
    assert not list(tmp_path.glob("*.zip"))
    assert not list(tmp_path.glob(".*tmp"))
    with open_session_store(folder) as store:
        assert store.n_samples("emg") == 500


def test_attach_trims_unwritten_tail_and_packs(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(2, 100.0))
    session.append("emg", *ramp(0, 250, 2, fs=100.0))
    session.add_label(1, timestamp=100.5)
    session.close()
    folder = session.path
    # Simulate a crash between growing the arrays and writing their chunks.
    import zarr

    data = zarr.open_array(str(folder / "emg.zarr"), mode="r+")
    ts = zarr.open_array(str(folder / "emg_timestamps.zarr"), mode="r+")
    data.resize((400, 2))
    ts.resize((330,))
    assert valid_length(data, ts) == 250
    (folder / ".labels.json.x.tmp").write_text("half")

    resumed = Session.attach(folder)
    assert resumed.n_samples("emg") == 250
    assert resumed.label_track == [LabelEvent(100.5, 1)]
    resumed.append("emg", *ramp(250, 50, 2, fs=100.0))
    zip_path = resumed.pack_to_zip()
    with open_session_store(zip_path) as store:
        got, got_ts = store.get_continuous("emg")
    np.testing.assert_array_equal(got, ramp(0, 300, 2, fs=100.0)[0])
    np.testing.assert_array_equal(got_ts, ramp(0, 300, 2, fs=100.0)[1])


def test_attach_refuses_non_folder(tmp_path):
    with pytest.raises(SessionError, match="unpacked folder"):
        Session.attach(tmp_path / "nope")


def test_a_failed_write_never_blocks_append_and_is_recorded(tmp_path):
    session = Session(tmp_path, buffer_seconds=0.5)
    errors = []
    session.add_error_listener(errors.append)
    session.init_stream("emg", StreamInfo(2, 100.0))
    session.append("emg", *ramp(0, 300, 2, fs=100.0))
    session.flush()
    folder = session.path
    # The drive under the arrays goes away: chunk writes fail from now on.
    chunks = folder / "emg.zarr" / "c"
    chunks.rename(folder / "chunks-aside")
    chunks.write_text("not a folder")
    session.append("emg", *ramp(300, 100, 2, fs=100.0))
    with pytest.raises(SessionError, match="writing to disk failed"):
        session.flush()
    (error,) = errors
    assert str(folder) in str(error)
    assert "writing samples failed" in str(error)
    assert session.error is error
    # Appends fail at once (a full queue would block them otherwise), counting what is lost.
    for start in range(400, 1400, 100):
        with pytest.raises(SessionError, match="writing to disk failed"):
            session.append("emg", *ramp(start, 100, 2, fs=100.0))
    lost = session.lost_samples()["emg"]
    assert (lost.n_samples, lost.first_timestamp, lost.last_timestamp) == (1100, 103.0, 113.99)
    assert session.add_label(1, timestamp=100.5) == LabelEvent(100.5, 1)
    with pytest.raises(SessionError, match=r"lost: emg 1100 samples \(103.000 to 113.990 s\)"):
        session.close()
    session.close()  # idempotent: the loss is said once
    assert len(errors) == 1
    meta = json.loads((folder / "meta.json").read_text())
    (entry,) = meta["write_errors"]
    assert entry["lost"] == {
        "emg": {"n_samples": 1100, "first_timestamp": 103.0, "last_timestamp": 113.99}
    }
    with pytest.raises(SessionError, match=r"not packed.*Session.attach"):
        session.pack_to_zip()
    assert folder.is_dir()

    chunks.unlink()  # the drive is back
    (folder / "chunks-aside").rename(chunks)
    resumed = Session.attach(folder)
    assert resumed.n_samples("emg") == 300
    assert resumed.label_track == [LabelEvent(100.5, 1)]
    assert resumed.write_errors() == meta["write_errors"]
    zip_path = resumed.pack_to_zip()
    with open_session_store(zip_path) as store:
        np.testing.assert_array_equal(store.get_continuous("emg")[0], ramp(0, 300, 2)[0])
        assert store.meta["write_errors"] == meta["write_errors"]


def test_faults_are_counted_kept_bounded_and_reach_meta_json(tmp_path):
    with Session(tmp_path) as session:
        session.init_stream("emg", StreamInfo(1, 10.0))
        for i in range(1500):
            session.record_fault("emg", "source_error", 100.0 + i, f"fault {i}")
        session.record_fault("emg", "disconnected", 1700.0, "unplugged")
        session.record_fault("glove", "disconnected", 1700.0, "no such stream: logged only")
        live = session.integrity("emg")
    assert live.n_source_errors == 1500
    kept = [message for _, message in live.source_errors]
    assert len(kept) == 2 * KEEP_EACH_END
    assert kept[:2] == ["fault 0", "fault 1"]
    assert kept[-1] == "fault 1499"
    assert live.disconnects == ((1700.0, None),)
    saved = json.loads((session.path / "meta.json").read_text())["integrity"]
    assert set(saved) == {"emg"}
    assert StreamIntegrity.from_meta(saved["emg"], where="test") == live
    resumed = Session.attach(session.path)  # an earlier run's record goes on
    resumed.record_fault("emg", "reconnected", 2000.0, "back")
    resumed.record_fault("emg", "source_error", 2001.0, "again")
    zip_path = resumed.pack_to_zip()
    with open_session_store(zip_path) as store:
        record = store.integrity("emg")
    assert record.n_source_errors == 1501
    assert record.source_errors[-1] == (2001.0, "again")
    assert record.disconnects == ((1700.0, 2000.0),)


def test_attach_removes_only_the_temporary_zips_of_its_own_session(tmp_path):
    session = Session(tmp_path)
    session.close()
    name = session.path.name
    own = [f".{name}.session.zip.0a1b2c3d.tmp", f".{name}.session.zip.x_y8z9k2.tmp"]
    others = [
        f".{name}.session.zip.tmp",
        f"{name}.session.zip.0a1b2c3d.tmp",
        f".{name}.session.zip.0a1b2c3d.tmp.bak",
        ".2026-01-01_00-00-00_aaaaaaaa.session.zip.0a1b2c3d.tmp",
        f".{name}x.session.zip.0a1b2c3d.tmp",
    ]
    for file in own + others:
        (tmp_path / file).write_text("x")
    Session.attach(session.path).close()
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {name, *others}


def test_attach_trims_a_truncated_chunk_as_a_kill_mid_write_leaves_it(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(2, 100.0))
    session.append("emg", *ramp(0, 450, 2, fs=100.0))
    session.close()
    folder = session.path
    # A chunk written in place and cut short (what the zarrs pipeline leaves after a kill).
    chunk = folder / "emg_timestamps.zarr" / "c" / "2"
    chunk.write_bytes(chunk.read_bytes()[:10])
    # Closed cleanly, the stream recorded its 450 rows: attach refuses to cut them.
    with pytest.raises(SessionError, match=r"closed with 450 rows .* only the first 200 read"):
        Session.attach(folder)
    for array in ("emg.zarr", "emg_timestamps.zarr"):  # as a kill leaves them: no such record
        meta = folder / array / "zarr.json"
        entry = json.loads(meta.read_text())
        del entry["attributes"]["labsession"]["closed_rows"]
        meta.write_text(json.dumps(entry))
    resumed = Session.attach(folder)
    assert resumed.n_samples("emg") == 200
    zip_path = resumed.pack_to_zip()
    with open_session_store(zip_path) as store:
        data, ts = store.get_continuous("emg")
    np.testing.assert_array_equal(data, ramp(0, 200, 2)[0])
    np.testing.assert_array_equal(ts, ramp(0, 200, 2, fs=100.0)[1])


def test_a_fault_while_no_samples_come_reaches_meta_json_within_seconds(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(2, 100.0))
    session.append("emg", np.zeros((100, 2), np.float32), np.arange(100) / 100.0)
    session.flush()
    session.record_fault("emg", "disconnected", 1.0, "the source stopped delivering")
    meta_file = session.path / "meta.json"

    def saved():
        entry = json.loads(meta_file.read_text()).get("integrity", {}).get("emg", {})
        return entry.get("n_disconnects") == 1

    try:
        assert wait_until(saved, timeout=10)  # the writer wakes although no sample comes
    finally:
        session.close()


def test_a_non_finite_fault_time_is_refused_and_never_blocks_meta_json(tmp_path):
    with Session(tmp_path) as session:
        session.init_stream("emg", StreamInfo(1, 100.0))
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="fault time must be a finite"):
                session.record_fault("emg", "source_error", bad, "x")
        session.append("emg", np.zeros((2, 1), np.float32), np.array([0.0, 1e-310]))
        session.add_label(0, 0.0)
    meta = json.loads((session.path / "meta.json").read_text())  # strict JSON: no NaN/inf
    assert meta["integrity"]["emg"]["effective_fs"] == 0.0  # two stamps 1e-310 s apart
    with open_session_store(session.path) as store:
        assert store.label_track == [LabelEvent(0.0, 0)]


def test_attach_counts_the_samples_written_after_the_last_saved_record(tmp_path):
    """The record in meta.json lags the disk; attach must not take the rest for a gap."""
    t = np.arange(600) / 100.0
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(1, 100.0))
    session.append("emg", np.zeros((200, 1), np.float32), t[:200])
    session.close()
    folder = session.path
    lagging = json.loads((folder / "meta.json").read_text())  # the record at 200 samples
    resumed = Session.attach(folder)
    resumed.append("emg", np.zeros((300, 1), np.float32), t[200:500])
    resumed.close()
    meta = json.loads((folder / "meta.json").read_text())
    meta["integrity"] = lagging["integrity"]  # as if killed before the record caught up
    (folder / "meta.json").write_text(json.dumps(meta))
    again = Session.attach(folder)
    again.append("emg", np.zeros((100, 1), np.float32), t[500:600])
    again.flush()
    record = again.integrity("emg")
    again.close()
    assert again.n_samples("emg") == record.n_samples == 600
    assert record.n_gaps == 0
    assert record.dropped_samples == 0
    assert record.last_timestamp == t[-1]


def test_append_racing_close_is_refused_never_silently_dropped(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(1, 1000.0))
    accepted, refused = [], []
    stop = threading.Event()

    def feed():
        start = 0
        while not stop.is_set():
            chunk = np.arange(start, start + 10)
            try:
                session.append("emg", chunk[:, None].astype(np.float32), chunk / 1000.0)
            except SessionError:
                refused.append(10)
                if session._closed:
                    return
                continue
            accepted.append(10)
            start += 10

    thread = threading.Thread(target=feed)
    thread.start()
    assert wait_until(lambda: sum(accepted) > 2000, timeout=20)
    session.close()
    stop.set()
    thread.join(10)
    with open_session_store(session.path) as store:
        assert store.n_samples("emg") == sum(accepted)  # every accepted sample is on disk


def test_what_its_readers_accept_is_accepted(tmp_path):
    # Refused when the writer's checks came: a 0-d array (what NumPy reductions give) and an
    # app_name of None, which earlier versions wrote and every reader reads.
    with Session(tmp_path, app_name=None, class_names=["Rest", "Fist"]) as session:
        session.init_stream("emg", StreamInfo(n_channels=1, fs=10.0))
        session.append("emg", np.ones((5, 1), np.float32), np.arange(5.0))
        session.add_label(np.array(1), timestamp=np.array(4.0))
    with open_session_store(session.path) as store:
        assert store.label_track == [LabelEvent(4.0, 1)]
        assert store.app_name == ""
