"""One flipped byte in a chunk of a real session: every reader raises SessionError naming the
chunk, and no reader ever hands out a changed number (windows before the chunk are unchanged)."""

import io
import json
import os
import shutil
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from labsession.errors import ArchiveError, SessionError
from labsession.recording import (
    Session,
    StreamInfo,
    TrainingData,
    iter_aligned_windows,
    iter_labeled_windows,
    open_session_store,
)
from labsession.sources import ReplaySource
from labsession.testing import record_synthetic_session

from .conftest import outcome_within

FS = 500.0  # chunks of 500 rows: the session's 4550 samples are in chunks 0..9
DATA_CHUNK = "emg.zarr/c/4/0"  # rows 2000-2499
TS_CHUNK = "emg_timestamps.zarr/c/4"


@pytest.fixture(scope="module")
def intact(tmp_path_factory):
    """The same recording packed (.session.zip) and as a folder, both by the current writer."""
    base = tmp_path_factory.mktemp("intact")
    kwargs = {"n_channels": 4, "fs": FS, "phase_seconds": 0.7, "seed": 5}
    return {
        "zip": record_synthetic_session(base / "z", **kwargs),
        "folder": record_synthetic_session(base / "f", pack=False, **kwargs),
    }


def flipped(intact_path, member, dest):
    """A copy of the session with one byte flipped in the middle of ``member``'s stored bytes."""
    if intact_path.is_dir():
        copy = dest / intact_path.name
        shutil.copytree(intact_path, copy)
        file = copy / member
        raw = bytearray(file.read_bytes())
        raw[len(raw) // 2] ^= 0x10
        file.write_bytes(bytes(raw))
        return copy
    copy = dest / intact_path.name
    shutil.copy(intact_path, copy)
    with zipfile.ZipFile(copy) as zf:
        info = zf.getinfo(member)
    assert info.compress_type == zipfile.ZIP_STORED
    raw = bytearray(copy.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.compress_size // 2] ^= 0x10
    copy.write_bytes(bytes(raw))
    return copy


@pytest.fixture(params=["zip", "folder"])
def kind(request):
    return request.param


@pytest.fixture(params=[DATA_CHUNK, TS_CHUNK], ids=["data chunk", "timestamp chunk"])
def member(request):
    return request.param


@pytest.fixture
def broken(intact, kind, member, tmp_path):
    return flipped(intact[kind], member, tmp_path)


def assert_names_the_chunk(error, path, member, *, checksummed=True):
    """The error names the session, the stream and the chunk, and the check that caught it:
    the chunk's zstd checksum where its frames carry one (folder or zip: the current writer's
    chunks are verified once, by zstd), else the zip's CRC-32."""
    text = str(getattr(error, "value", error))  # a pytest.raises result or the exception
    assert str(path) in text
    assert "stream 'emg'" in text
    assert member in text
    if checksummed:
        assert "zstd" in text
        assert "CRC" not in text
    else:
        assert path.suffix == ".zip"
        assert "fails its CRC check" in text


def test_the_flip_changes_the_bytes_only(intact, kind, member, tmp_path):
    """The copy differs from the original in one byte, so every check below is about that."""
    broken = flipped(intact[kind], member, tmp_path)
    if kind == "zip":
        a, b = intact[kind].read_bytes(), broken.read_bytes()
    else:
        a, b = (intact[kind] / member).read_bytes(), (broken / member).read_bytes()
    assert len(a) == len(b)
    assert sum(x != y for x, y in zip(a, b, strict=True)) == 1


def test_store_reads_raise(broken, member):
    with open_session_store(broken) as store:
        with pytest.raises(SessionError) as error:
            store.get_continuous("emg")
        assert_names_the_chunk(error, broken, member)
        with pytest.raises(SessionError) as error:
            store.get_trials("emg", pre=0.1)
        assert_names_the_chunk(error, broken, member)
        # The other stream and the rows outside the chunk read as they were written.
        store.get_continuous("glove")
        store.read_rows("emg", 0, 2000)


def prefix_of(got, expected):
    assert len(got) < len(expected)
    for got_item, expected_item in zip(got, expected, strict=False):
        for a, b in zip(got_item, expected_item, strict=True):
            if isinstance(a, dict):
                for name in a:
                    np.testing.assert_array_equal(a[name], b[name])
            else:
                np.testing.assert_array_equal(a, b)


def collect(iterator):
    """Windows yielded before the error (copied: views may be of a block read later)."""
    got = []
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            pytest.fail("no SessionError: the corrupt chunk was handed out as numbers")
        except SessionError as error:
            return got, error
        got.append(
            tuple(
                {k: v.copy() for k, v in x.items()} if isinstance(x, dict) else np.copy(x)
                for x in item
            )
        )


@pytest.mark.parametrize("copy", [True, False])
def test_labeled_windows_raise_after_unchanged_windows(intact, kind, broken, member, copy):
    expected = list(iter_labeled_windows(intact[kind], "emg", 0.2, 0.05, copy=True))
    got, error = collect(iter_labeled_windows(broken, "emg", 0.2, 0.05, copy=copy))
    assert_names_the_chunk(error, broken, member)
    prefix_of(got, expected)


def test_aligned_windows_raise_after_unchanged_windows(intact, kind, broken, member):
    expected = list(iter_aligned_windows(intact[kind], "emg", ["glove"], 0.2, 0.05, 3))
    got, error = collect(iter_aligned_windows(broken, "emg", ["glove"], 0.2, 0.05, 3))
    assert_names_the_chunk(error, broken, member)
    prefix_of(got, expected)


def test_training_data_raises(broken, member):
    with pytest.raises(SessionError) as error:
        TrainingData([broken]).to_arrays("emg", 0.2, 0.05, features=["rms"])
    assert_names_the_chunk(error, broken, member)


def test_replay_reports_the_chunk_from_read_and_emits_only_intact_samples(intact, kind, tmp_path):
    """Samples of the corrupt chunk are never emitted; each read reaching them raises from
    ``read`` (a stream's loop records it and retries), and the replay goes on after them."""
    broken = flipped(intact[kind], DATA_CHUNK, tmp_path)
    with open_session_store(intact[kind]) as store:
        data, _ = store.get_continuous("emg")
    source = ReplaySource(broken, "emg", speed=0, loop=False)
    source.connect()
    errors, emitted, position = [], [], 0
    try:
        for _ in range(len(data) // 300 + 1):
            step = min(300, len(data) - position)
            source.step(step)
            try:
                chunk = source.read()
            except SessionError as exc:
                errors.append((position, str(exc)))
            else:
                emitted.append((position, chunk[0]))
            position += step
    finally:
        source.close()
    assert position == len(data)
    # Reads of rows 1800-2099, 2100-2399 and 2400-2699 touch rows 2000-2499: those raise.
    assert [p for p, _ in errors] == [1800, 2100, 2400]
    for _, text in errors:
        assert DATA_CHUNK in text
        assert str(broken) in text
    for start, values in emitted:
        np.testing.assert_array_equal(values, data[start : start + len(values)])
    assert sum(len(v) for _, v in emitted) == len(data) - 900


def test_replay_of_a_corrupt_timestamp_chunk_refuses_to_connect(intact, kind, tmp_path):
    """Pacing needs every timestamp: connect reads them all and names the chunk."""
    broken = flipped(intact[kind], TS_CHUNK, tmp_path)
    source = ReplaySource(broken, "emg", speed=0)
    with pytest.raises(SessionError, match=TS_CHUNK.replace(".", r"\.")):
        source.connect()
    source.close()


def test_a_myogestic_zip_without_zstd_checksums_is_verified_by_its_crc(myogestic_dir, tmp_path):
    """MyoGestic writes zstd frames without checksums: in its zip the CRC is what catches a flip
    (a folder of such frames cannot be verified, see SessionStore.read_rows)."""
    broken = flipped(myogestic_dir / "sample.session.zip", "emg.zarr/c/3/0", tmp_path)
    with open_session_store(broken) as store:
        with pytest.raises(SessionError) as error:
            store.read_rows("emg", 3000, 3001)
        assert_names_the_chunk(error, broken, "emg.zarr/c/3/0", checksummed=False)
        with pytest.raises(SessionError):
            list(iter_labeled_windows(broken, "emg", 0.2, 0.1))


# -- something else in a chunk's place, or no chunk at all ---------------------------------------
def in_thread(action, seconds=5.0):
    """``action()``'s result or exception; a hang fails the test instead of hanging it."""
    hang = "blocked: the reader opened something that never answers"
    return outcome_within(action, seconds, hang)


def get_continuous(path):
    with open_session_store(path) as store:
        return store.get_continuous("emg")


def replace_member(folder, member, what):
    file = folder / member
    file.unlink()
    if what == "named pipe":
        os.mkfifo(file)
    elif what == "folder":
        file.mkdir()
    elif what == "link to a device":
        file.symlink_to("/dev/zero")  # endless zeros: it must not be read at all
    else:
        file.symlink_to(folder / "no such file")


@pytest.mark.parametrize("what", ["named pipe", "folder", "link to a device", "broken link"])
def test_something_else_in_a_chunks_place_is_refused_at_once(intact, member, what, tmp_path):
    """Before: a named pipe as a sample chunk blocked get_continuous forever, and one as a
    timestamp chunk was left out of the listing, so the session opened with 0 samples."""
    copy = tmp_path / "s"
    shutil.copytree(intact["folder"], copy)
    replace_member(copy, member, what)
    before = sorted(p.name for p in copy.rglob("*"))
    outcome = in_thread(lambda: get_continuous(copy))
    assert isinstance(outcome, SessionError), outcome
    assert f"{copy}: stream 'emg' cannot be read: chunk {member} " in str(outcome)
    kind = {"broken link": "is a link to nothing"}.get(what, f"is a {what}, not a file")
    if what == "link to a device":
        kind = "is a character device, not a file"
    assert kind in str(outcome)
    assert sorted(p.name for p in copy.rglob("*")) == before  # nothing changed or removed


def without(intact, kind, members, tmp_path, edit=None):
    """A copy of the ``kind`` session lacking ``members`` (a zip is re-packed without them)."""
    copy = tmp_path / "s"
    shutil.copytree(intact["folder"], copy)
    for member in members:
        (copy / member).unlink()
    if edit is not None:
        edit(copy)
    if kind == "folder":
        return copy
    packed = tmp_path / "s.session.zip"
    with zipfile.ZipFile(packed, "w") as zf:
        for file in sorted(copy.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(copy).as_posix())
    return packed


def finite_fill(folder):
    """A finite fill value for the timestamps: a missing chunk would read as made-up stamps."""
    meta = folder / "emg_timestamps.zarr" / "zarr.json"
    data = json.loads(meta.read_text())
    data["fill_value"] = 1000.0
    meta.write_text(json.dumps(data))


@pytest.mark.parametrize("edit", [None, finite_fill], ids=["NaN fill", "finite fill"])
def test_a_timestamp_chunk_missing_below_the_last_is_refused(intact, kind, tmp_path, edit):
    """Before: its rows had NaN timestamps (or, with a finite fill value, made-up ones)
    inside n_samples. Writers write timestamp chunks in order: a gap is damage."""
    broken = without(intact, kind, [TS_CHUNK], tmp_path, edit)
    with open_session_store(broken) as store:
        with pytest.raises(SessionError, match=rf"chunk {TS_CHUNK} is missing, but a later"):
            store.get_continuous("emg")
        with pytest.raises(SessionError, match=rf"chunk {TS_CHUNK} is missing"):
            store.get_trials("emg")
        np.testing.assert_array_equal(
            store.read_rows("emg", 0, 2000, timestamps=True),
            get_continuous(intact[kind])[1][:2000],
        )
    expected = list(iter_labeled_windows(intact[kind], "emg", 0.2, 0.05, copy=True))
    got, error = collect(iter_labeled_windows(broken, "emg", 0.2, 0.05, copy=True))
    assert TS_CHUNK in str(error)
    prefix_of(got, expected)


def unmarked(folder):
    """The arrays as earlier labsession versions and MyoGestic write them: without the mark
    that every chunk was written (Zarr leaves out a chunk that is all fill value), nor the rows
    they were closed with."""
    for array, ours in (
        ("emg.zarr", {"every_chunk_written": True, "closed_rows": 4550}),
        ("emg_timestamps.zarr", {"closed_rows": 4550}),
    ):
        meta = folder / array / "zarr.json"
        data = json.loads(meta.read_text())
        assert data.pop("attributes") == {"labsession": ours}
        meta.write_text(json.dumps(data))


def test_a_missing_sample_chunk_of_an_unmarked_array_reads_as_fill_where_its_timestamps_exist(
    intact, kind, tmp_path
):
    """In an array not marked as written chunk by chunk, a missing sample chunk reads as its
    fill value (0) as in Zarr, but not when the timestamp chunk of its rows is missing too."""
    data, ts = get_continuous(intact[kind])
    broken = without(intact, kind, [DATA_CHUNK], tmp_path / "a", unmarked)
    got, got_ts = get_continuous(broken)
    expected = data.copy()
    expected[2000:2500] = 0
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_ts, ts)
    both = without(intact, kind, [DATA_CHUNK, TS_CHUNK], tmp_path / "b", unmarked)
    with open_session_store(both) as store:
        np.testing.assert_array_equal(store.read_rows("emg", 0, 2000), data[:2000])
        with pytest.raises(
            SessionError,
            match=rf"chunk {DATA_CHUNK} is missing, and so is the timestamp chunk of its rows "
            rf"\({TS_CHUNK}\)",
        ):
            store.read_rows("emg", 2100, 2200)


def test_a_missing_sample_chunk_of_a_labsession_session_is_refused(intact, kind, tmp_path):
    """labsession writes every chunk and marks its sample arrays so: a sample chunk lost later
    (an interrupted copy or sync) is refused by every reader, naming the chunk, never read as
    rows of zeros; the rows before it read as they were."""
    data, _ = get_continuous(intact[kind])
    broken = without(intact, kind, [DATA_CHUNK], tmp_path)
    message = rf"chunk {DATA_CHUNK} is missing, but this array's writer wrote every chunk"
    with open_session_store(broken) as store:
        with pytest.raises(SessionError, match=message) as error:
            store.get_continuous("emg")
        assert str(broken) in str(error.value)
        with pytest.raises(SessionError, match=message):
            store.get_trials("emg")
        np.testing.assert_array_equal(store.read_rows("emg", 0, 2000), data[:2000])
    expected = list(iter_labeled_windows(intact[kind], "emg", 0.2, 0.05, copy=True))
    got, error = collect(iter_labeled_windows(broken, "emg", 0.2, 0.05, copy=True))
    assert DATA_CHUNK in str(error)
    prefix_of(got, expected)
    with pytest.raises(SessionError, match=message):
        TrainingData([broken]).to_arrays("emg", 0.2, 0.1, features=["rms"])


def test_a_folder_that_lost_a_sample_chunk_is_never_packed(intact, tmp_path):
    """attach + pack of such a folder packed it, removed the folder and left a zip that every
    reader refuses: the only copy left was unreadable."""
    broken = without(intact, "folder", [DATA_CHUNK], tmp_path)
    files = sorted(p.relative_to(broken) for p in broken.rglob("*"))
    with pytest.raises(ArchiveError, match=rf"sample chunk {DATA_CHUNK} is missing from the"):
        Session.attach(broken).pack_to_zip()
    assert sorted(p.relative_to(broken) for p in broken.rglob("*")) == files  # kept whole
    assert not list(tmp_path.glob("*.session.zip"))


# -- chunks lost from the end of a closed session ---------------------------------------------
TS_TAIL = ["emg_timestamps.zarr/c/8", "emg_timestamps.zarr/c/9"]  # rows 4000-4549
DATA_TAIL = ["emg.zarr/c/9/0"]  # rows 4500-4549


def attributes(session, array):
    """The ``attributes`` in ``array``'s ``zarr.json``, in a folder or a zip."""
    if session.is_dir():
        return json.loads((session / array / "zarr.json").read_text())["attributes"]
    with zipfile.ZipFile(session) as zf:
        return json.loads(zf.read(f"{array}/zarr.json"))["attributes"]


def test_a_clean_close_records_the_rows_in_both_arrays(intact, kind):
    """Only attributes are added: plain Zarr (MyoGestic's reader) reads the arrays as before."""
    assert attributes(intact[kind], "emg.zarr") == {
        "labsession": {"every_chunk_written": True, "closed_rows": 4550}
    }
    assert attributes(intact[kind], "emg_timestamps.zarr") == {"labsession": {"closed_rows": 4550}}


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (
            TS_TAIL,
            r"stream 'emg': emg_timestamps\.zarr was closed with 4550 rows \(zarr\.json "
            r"attributes labsession\.closed_rows\), but its chunk files hold 4000: chunks "
            r"emg_timestamps\.zarr/c/8 to emg_timestamps\.zarr/c/9 are missing \(the last "
            r"present one is emg_timestamps\.zarr/c/7\)",
        ),
        (
            DATA_TAIL,
            r"stream 'emg': emg\.zarr was closed with 4550 rows \(zarr\.json attributes "
            r"labsession\.closed_rows\), but its chunk files hold 4500: chunk emg\.zarr/c/9/0 "
            r"is missing \(the last present one is emg\.zarr/c/8/0\)",
        ),
    ],
    ids=["timestamp chunks", "sample chunk"],
)
def test_chunks_lost_from_the_end_of_a_closed_session_are_refused(
    intact, kind, members, message, tmp_path
):
    """Before: a closed session whose last timestamp chunks were lost (the end of an
    interrupted copy) read as a shorter session, 4000 samples, with no error: a crash and a
    damaged copy looked alike. Now every reader names the array, the rows it was closed with
    and those found."""
    broken = without(intact, kind, members, tmp_path)
    with open_session_store(broken) as store:
        for read in (
            lambda: store.n_samples("emg"),
            lambda: store.get_continuous("emg"),
            lambda: store.get_trials("emg"),
        ):
            with pytest.raises(SessionError, match=message) as error:
                read()
            assert str(broken) in str(error.value)
        assert store.n_samples("glove") > 0  # the other stream is whole
    with pytest.raises(SessionError, match=message):
        list(iter_labeled_windows(broken, "emg", 0.2, 0.05))
    with pytest.raises(SessionError, match=message):
        TrainingData([broken]).to_arrays("emg", 0.2, 0.1, features=["rms"])
    with pytest.raises(SessionError, match=message):
        ReplaySource(broken, "emg", speed=0).connect()


def test_a_lost_end_reads_as_a_shorter_session_without_the_record(intact, kind, tmp_path):
    """Arrays without the record (MyoGestic's, earlier labsession's, a crash) read as before:
    the stream ends where its timestamp chunks end."""
    data, ts = get_continuous(intact[kind])
    shorter = without(intact, kind, TS_TAIL, tmp_path, unmarked)
    got, got_ts = get_continuous(shorter)
    np.testing.assert_array_equal(got, data[:4000])
    np.testing.assert_array_equal(got_ts, ts[:4000])


def test_rows_appended_by_another_tool_after_the_close_are_read(intact, tmp_path):
    """The record says how many rows the stream was closed with; a tool that appended since
    (Zarr's own resize and write keep the attributes) leaves the stream longer, not damaged."""
    import zarr

    copy = tmp_path / "s"
    shutil.copytree(intact["folder"], copy)
    data, ts = get_continuous(copy)
    with zarr.config.set({"array.write_empty_chunks": True}):
        for name, more in (("emg.zarr", data[-100:]), ("emg_timestamps.zarr", ts[-100:] + 1)):
            array = zarr.open_array(str(copy / name), mode="r+")
            array.append(more)
    _, got_ts = get_continuous(copy)
    assert len(got_ts) == 4650
    np.testing.assert_array_equal(got_ts[4550:], ts[-100:] + 1)


def contents(folder):
    return sorted((p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file())


def test_a_closed_folder_that_lost_its_end_is_never_attached_nor_packed(intact, tmp_path):
    """Before: attach trimmed the stream to the chunks left and packed it, removing the folder:
    the lost end was made a shorter session for good. Now nothing is changed or removed."""
    broken = without(intact, "folder", TS_TAIL, tmp_path)
    files = contents(broken)
    with pytest.raises(SessionError, match=r"was closed with 4550 rows .* hold 4000"):
        Session.attach(broken).pack_to_zip()
    assert contents(broken) == files
    assert not list(tmp_path.glob("*.session.zip"))


def test_a_closed_folder_with_a_corrupt_chunk_is_never_trimmed(intact, tmp_path):
    """Before: attach cut the stream at the first chunk it could not read (as after a crash),
    dropping the whole rows after it. A stream that was closed keeps them: attach refuses, and
    changes nothing, not even the streams checked before it."""
    copy = tmp_path / "s"
    shutil.copytree(intact["folder"], copy)
    chunk = copy / "glove_timestamps.zarr" / "c" / "5"
    chunk.write_bytes(chunk.read_bytes()[:10])
    files = contents(copy)
    with pytest.raises(SessionError, match=r"'glove' was closed with 910 rows .* first 500 read"):
        Session.attach(copy)
    assert contents(copy) == files


def test_a_session_closed_then_damaged_is_not_packed(tmp_path):
    """pack_to_zip after close (stop_recording(pack=False), then Finish): the folder's lost end
    is refused before anything is packed, and the folder is kept."""
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    session.append("emg", np.ones((450, 2), np.float32), np.arange(450) / 100)
    session.close()
    (session.path / "emg_timestamps.zarr" / "c" / "4").unlink()
    with pytest.raises(SessionError, match=r"emg_timestamps\.zarr was closed with 450 rows"):
        session.pack_to_zip()
    assert session.path.is_dir()
    assert not list(tmp_path.glob("*.session.zip"))


def test_attach_removes_the_record_and_the_next_close_writes_it_again(tmp_path):
    """Rows appended after an attach: the record is removed at once (a crash now leaves the
    longer session, with no record) and the close records the new count."""
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    session.append("emg", np.ones((450, 2), np.float32), np.arange(450) / 100)
    session.close()
    attached = Session.attach(session.path)
    assert attributes(session.path, "emg.zarr") == {"labsession": {"every_chunk_written": True}}
    assert attributes(session.path, "emg_timestamps.zarr") == {}
    attached.append("emg", np.ones((100, 2), np.float32), 5 + np.arange(100) / 100)
    zip_path = attached.pack_to_zip()
    assert attributes(zip_path, "emg.zarr")["labsession"]["closed_rows"] == 550
    assert attributes(zip_path, "emg_timestamps.zarr") == {"labsession": {"closed_rows": 550}}
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") == 550


def test_an_unmarked_folder_whose_last_sample_chunk_zarr_left_out_is_closed_and_packed(tmp_path):
    """Before: a MyoGestic (or earlier labsession) folder whose last sample chunk is all zeros
    (Zarr leaves such a chunk out) was called damaged once attached and closed (the record of
    its rows then pointed at the chunk never written): the pack was refused, and after a plain
    close the folder no longer read. That chunk reads as zeros where its timestamps are."""
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    values = np.ones((250, 2), np.float32)
    values[200:] = 0
    session.append("emg", values, np.arange(250) / 100)
    session.close()
    (session.path / "emg.zarr" / "c" / "2" / "0").unlink()  # as Zarr writes it by default
    for array in ("emg.zarr", "emg_timestamps.zarr"):
        meta = session.path / array / "zarr.json"
        data = json.loads(meta.read_text())
        data["attributes"] = {}
        meta.write_text(json.dumps(data))
    Session.attach(session.path).close()
    assert attributes(session.path, "emg.zarr") == {"labsession": {"closed_rows": 250}}
    with open_session_store(session.path) as store:
        np.testing.assert_array_equal(store.get_continuous("emg")[0], values)
    zip_path = Session.attach(session.path).pack_to_zip()
    with open_session_store(zip_path) as store:
        np.testing.assert_array_equal(store.get_continuous("emg")[0], values)
    lost = tmp_path / "lost.session.zip"  # its timestamps lost too: damage, as before
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(lost, "w") as dst:
        for info in src.infolist():
            if info.filename != "emg_timestamps.zarr/c/2":
                dst.writestr(info, src.read(info))
    with (
        open_session_store(lost) as store,
        pytest.raises(SessionError, match=r"closed with 250 rows .* hold 200"),
    ):
        store.n_samples("emg")


def test_a_second_of_zeros_is_written_and_read_back(tmp_path):
    """A chunk that is all zeros (the fill value) is written too, so it reads back as
    recorded, and losing it is caught like losing any other chunk."""
    session = Session(tmp_path, class_names=["Rest"])
    session.init_stream("emg", StreamInfo(n_channels=2, fs=100.0))
    values = np.full((300, 2), 7.0, np.float32)
    values[100:200] = 0
    session.append("emg", values, np.arange(300) / 100)
    session.close()
    with Session.attach(session.path) as attached:  # goes on writing every chunk
        attached.append("emg", np.zeros((100, 2), np.float32), 3 + np.arange(100) / 100)
    values = np.concatenate([values, np.zeros((100, 2), np.float32)])
    assert (session.path / "emg.zarr" / "c" / "1" / "0").is_file()
    assert (session.path / "emg.zarr" / "c" / "3" / "0").is_file()
    with open_session_store(session.path) as store:
        np.testing.assert_array_equal(store.get_continuous("emg")[0], values)
    (session.path / "emg.zarr" / "c" / "1" / "0").unlink()
    with (
        open_session_store(session.path) as store,
        pytest.raises(SessionError, match=r"chunk emg.zarr/c/1/0 is missing"),
    ):
        store.get_continuous("emg")


# -- the archive's directory: one flipped bit in a name or an offset ------------------------------
def _central_entry(raw: bytes, name: str) -> int:
    """Offset of ``name``'s record in the zip's central directory."""
    position = raw.find(b"PK\x01\x02")
    while position != -1:
        name_len, extra_len, comment_len = struct.unpack("<HHH", raw[position + 28 : position + 34])
        if raw[position + 46 : position + 46 + name_len] == name.encode():
            return position
        position = raw.find(b"PK\x01\x02", position + 46 + name_len + extra_len + comment_len)
    raise AssertionError(f"{name} is not in the central directory")


def _renamed(raw: bytearray, name: str) -> None:
    entry = _central_entry(raw, name)
    raw[entry + 46 + name.index("4")] ^= 0x07  # "c/4/0" -> "c/3/0": another chunk's name


def _undecodable(raw: bytearray, name: str) -> None:
    entry = _central_entry(raw, name)
    raw[entry + 46 + name.index("4")] ^= 0x40  # "c/4/0" -> "c/t/0": no chunk's name


def _redirected(raw: bytearray, name: str) -> None:
    other = name.replace("/4", "/3")  # the directory points at the previous chunk's header
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        target = zf.getinfo(other).header_offset
    raw[_central_entry(raw, name) + 42 : _central_entry(raw, name) + 46] = struct.pack("<I", target)


def _overlapping(raw: bytearray, name: str) -> None:
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo(name)
    at = info.header_offset + 28  # the local header's extra field length
    (extra_len,) = struct.unpack("<H", raw[at : at + 2])
    raw[at : at + 2] = struct.pack("<H", extra_len + 64)  # its bytes would start 64 bytes later


@pytest.mark.parametrize(
    "damage",
    [_renamed, _undecodable, _redirected, _overlapping],
    ids=["renamed to another chunk", "renamed to no chunk", "offset of another", "overlapping"],
)
def test_a_damaged_directory_entry_never_hands_out_other_bytes(intact, member, damage, tmp_path):
    """Every chunk's bytes are intact (each frame passes its own zstd checksum), but the
    directory no longer ties the member to its bytes: the archive is refused at its first chunk
    read (its directory is checked whole then), naming it, rather than reading another chunk's
    samples (or the fill value, for a chunk whose name no longer decodes) in its place."""
    broken = tmp_path / intact["zip"].name
    raw = bytearray(intact["zip"].read_bytes())
    damage(raw, member)
    broken.write_bytes(bytes(raw))
    with pytest.raises(SessionError, match=r"corrupt archive") as error:
        get_continuous(broken)
    assert str(broken) in str(error.value)
    with pytest.raises(SessionError):
        list(iter_labeled_windows(broken, "emg", 0.2, 0.1))
    with pytest.raises(SessionError):
        TrainingData([broken]).to_arrays("emg", 0.2, 0.1, features=["rms"])


def test_a_last_member_running_into_the_directory_is_refused(intact, tmp_path):
    """A flipped bit makes the last member's compressed size (in the central directory) reach
    past its bytes into the directory itself, still inside the file: the archive is refused at
    its first chunk read, naming the archive and the member."""
    raw = bytearray(intact["zip"].read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        last = max(zf.infolist(), key=lambda info: info.header_offset)
        directory = zf.start_dir
    entry = _central_entry(raw, last.filename)
    (size,) = struct.unpack("<I", raw[entry + 20 : entry + 24])
    bit = next(1 << i for i in range(32) if not size & 1 << i and 1 << i >= 64)
    raw[entry + 20 : entry + 24] = struct.pack("<I", size | bit)  # one bit: 64+ bytes longer
    data_end = last.header_offset + 30 + len(last.filename) + last.compress_size
    assert data_end == directory  # its bytes ended where the directory starts...
    assert data_end + bit <= len(raw)  # ...and now run into it, not past the file's end
    broken = tmp_path / intact["zip"].name
    broken.write_bytes(bytes(raw))
    with pytest.raises(SessionError, match=r"overlaps the archive's directory") as error:
        get_continuous(broken)
    assert str(broken) in str(error.value)
    assert repr(last.filename) in str(error.value)


def test_a_directory_entry_swallowing_the_next_is_refused(intact, tmp_path):
    """A damaged length field (here an entry's comment length, 0 -> the size of the next
    entry) makes :mod:`zipfile` read the next entry as a comment: that chunk vanishes from the
    directory and would read as its fill value. The end record still counts it, so the
    archive is refused, naming the archive."""
    raw = bytearray(intact["zip"].read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        names = [info.filename for info in zf.infolist()]
    chunk = next(name for name in names[:-1] if name.startswith("emg.zarr/c/"))
    entry = _central_entry(raw, chunk)
    name_len, extra_len, comment_len = struct.unpack("<HHH", raw[entry + 28 : entry + 34])
    following = entry + 46 + name_len + extra_len + comment_len
    assert raw[following : following + 4] == b"PK\x01\x02"
    assert comment_len == 0
    n, e, c = struct.unpack("<HHH", raw[following + 28 : following + 34])
    raw[entry + 32 : entry + 34] = struct.pack("<H", 46 + n + e + c)
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:  # zipfile itself sees one member less
        assert len(zf.infolist()) == len(names) - 1
    broken = tmp_path / intact["zip"].name
    broken.write_bytes(bytes(raw))
    with pytest.raises(SessionError, match=r"end record counts") as error:
        get_continuous(broken)
    assert str(broken) in str(error.value)


@pytest.mark.parametrize("bad", [[2], [7], [2, 7]], ids=["first half", "second half", "both"])
@pytest.mark.parametrize("channels_first", [False, True])
def test_a_read_on_two_threads_names_the_first_corrupt_chunk(
    intact, kind, bad, channels_first, tmp_path
):
    """A read with a pool decodes chunks 0-4 in the calling thread and 5-9 on the pool; a
    corrupt chunk in either half fails the read, naming the first corrupt one, and the same
    read of the intact session equals the read without a pool."""
    path = intact[kind]
    for i, index in enumerate(bad):
        (tmp_path / str(i)).mkdir()
        path = flipped(path, f"emg.zarr/c/{index}/0", tmp_path / str(i))
    with ThreadPoolExecutor(2) as pool:
        with open_session_store(intact[kind]) as store:
            chunks = store._array_chunks("emg", timestamps=False)
            n = store.n_samples("emg")
            alone = chunks.read(0, n, channels_first=channels_first)
            pooled = chunks.read(0, n, pool=pool, channels_first=channels_first)
            np.testing.assert_array_equal(pooled, alone)
        with open_session_store(path) as store:
            chunks = store._array_chunks("emg", timestamps=False)
            with pytest.raises(SessionError) as error:
                chunks.read(0, n, pool=pool, channels_first=channels_first)
    assert_names_the_chunk(error, path, f"emg.zarr/c/{bad[0]}/0")
    assert all(f"emg.zarr/c/{index}/0" not in str(error.value) for index in bad[1:])
