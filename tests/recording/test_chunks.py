"""Verified, bounded chunk reads: ``read_rows`` against plain Zarr, bounds, caps, zarrs opt-in."""

import json
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest
import zarr
import zarr.storage
from hypothesis import given, settings
from hypothesis import strategies as st

from labsession.errors import SessionError
from labsession.recording import iter_labeled_windows, open_session_store
from labsession.recording._chunks import ArrayChunks, zstd_content_size
from labsession.testing import record_synthetic_session

from .conftest import outcome_within

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, myogestic_dir):
    """Every layout at hand: MyoGestic's folder and zip, and labsession's (new writer) both ways."""
    base = tmp_path_factory.mktemp("layouts")
    ours_zip = record_synthetic_session(base, n_channels=4, fs=500.0, phase_seconds=0.7, seed=3)
    ours_folder = record_synthetic_session(
        base, n_channels=4, fs=500.0, phase_seconds=0.7, seed=4, pack=False
    )
    return {
        "myogestic folder": myogestic_dir / "folder",
        "myogestic zip": myogestic_dir / "sample.session.zip",
        "labsession folder": ours_folder,
        "labsession zip": ours_zip,
    }


def plain_zarr(path, array_name):
    """The array as MyoGestic (plain zarr-python) opens it."""
    if path.is_dir():
        return zarr.open_array(str(path / array_name), mode="r")
    return zarr.open_array(store=zarr.storage.ZipStore(path, mode="r"), path=array_name, mode="r")


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_read_rows_equals_plain_zarr_on_every_layout(layouts, data):
    kind = data.draw(st.sampled_from(sorted(layouts)))
    path = layouts[kind]
    with open_session_store(path) as store:
        stream = data.draw(st.sampled_from(store.stream_names))
        timestamps = data.draw(st.booleans())
        array = plain_zarr(path, f"{stream}_timestamps.zarr" if timestamps else f"{stream}.zarr")
        n = store.n_samples(stream)
        assert n == array.shape[0]  # sessions closed normally: every row is valid
        start = data.draw(st.integers(0, n))
        stop = data.draw(st.integers(start, n))
        got = store.read_rows(stream, start, stop, timestamps=timestamps)
        expected = array[start:stop]
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        if not timestamps:
            first = store.read_rows(stream, start, stop, channels_first=True, dtype=np.float64)
            assert first.flags.c_contiguous
            np.testing.assert_array_equal(first, expected.T.astype(np.float64))


def test_new_sessions_write_checksummed_zstd_frames_plain_zarr_reads(layouts):
    """Every chunk of a new session is a zstd frame with the content-checksum flag, and plain
    zarr-python (what MyoGestic reads with) returns the same numbers as labsession."""
    folder = layouts["labsession folder"]
    chunk_files = [f for f in folder.rglob("c/*") if f.is_file()] + [
        f for f in folder.rglob("c/*/*") if f.is_file()
    ]
    assert chunk_files
    for file in chunk_files:
        frame = file.read_bytes()
        assert frame[:4] == ZSTD_MAGIC
        assert frame[4] & 0x04, f"{file} has no content checksum"
    meta = json.loads((folder / "emg.zarr" / "zarr.json").read_text())
    assert meta["codecs"][1] == {"name": "zstd", "configuration": {"level": 0, "checksum": True}}
    with open_session_store(folder) as store:
        data, ts = store.get_continuous("emg")
    np.testing.assert_array_equal(data, plain_zarr(folder, "emg.zarr")[:])
    np.testing.assert_array_equal(ts, plain_zarr(folder, "emg_timestamps.zarr")[:])


def test_out_of_range_and_unknown_stream(layouts):
    with open_session_store(layouts["myogestic zip"]) as store:
        n = store.n_samples("emg")
        assert store.read_rows("emg", n, n).shape == (0, 8)
        with pytest.raises(IndexError, match=rf"rows \[0, {n + 1}\).*has {n} samples"):
            store.read_rows("emg", 0, n + 1)
        with pytest.raises(IndexError, match="start <= stop"):
            store.read_rows("emg", 5, 4)
        with pytest.raises(IndexError, match="start <= stop"):
            store.read_rows("emg", -1, 4)
        with pytest.raises(KeyError, match=r"\['emg', 'glove'\]"):
            store.read_rows("eeg", 0, 1)
        with pytest.raises(ValueError, match="no channels"):
            store.read_rows("emg", 0, 1, timestamps=True, channels_first=True)


# -- a declared shape is bounded by the chunks that exist ---------------------------------------
def declare_rows(meta_bytes, rows):
    meta = json.loads(meta_bytes)
    meta["shape"] = [rows, *meta["shape"][1:]]
    return json.dumps(meta).encode()


def finishes(action, seconds=10.0):
    """Run ``action`` in a thread; return its outcome (a hang fails instead of hanging)."""
    return outcome_within(action, seconds, "did not finish: the reader walks the declared shape")


@pytest.mark.parametrize("kind", ["myogestic zip", "labsession zip"])
def test_a_huge_declared_shape_in_a_small_zip_reads_only_what_exists(layouts, kind, tmp_path):
    source = layouts[kind]
    inflated = tmp_path / "inflated.session.zip"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(inflated, "w") as dst:
        for info in src.infolist():
            raw = src.read(info)
            if info.filename in ("emg.zarr/zarr.json", "emg_timestamps.zarr/zarr.json"):
                raw = declare_rows(raw, 10**12)
            dst.writestr(info, raw)
    with open_session_store(source) as store:
        expected = store.get_continuous("emg")
    assert inflated.stat().st_size < 2 * source.stat().st_size

    def read():
        with open_session_store(inflated) as store:
            assert store.stores["emg"].shape[0] == 10**12
            return store.n_samples("emg"), store.get_continuous("emg")

    outcome = finishes(read)
    assert not isinstance(outcome, BaseException), outcome
    n, (data, ts) = outcome
    assert n == expected[0].shape[0]
    np.testing.assert_array_equal(data, expected[0])
    np.testing.assert_array_equal(ts, expected[1])


def test_a_huge_declared_shape_in_a_folder_reads_only_what_exists(layouts, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(layouts["labsession folder"], folder)
    with open_session_store(folder) as store:
        expected = store.n_samples("emg")
    for name in ("emg.zarr", "emg_timestamps.zarr"):
        meta = folder / name / "zarr.json"
        meta.write_bytes(declare_rows(meta.read_bytes(), 10**12))

    def count():
        with open_session_store(folder) as store:
            return store.n_samples("emg")

    assert finishes(count) == expected


# -- a chunk decodes into at most its own size ---------------------------------------------------
def zstd_frame(blocks, content_size=None):
    """A hand-built zstd frame: ``blocks`` of ("raw", bytes) or ("rle", n) (n copies of 7)."""
    out = bytearray(ZSTD_MAGIC)
    if content_size is None:
        out += bytes([0x00, 0x58])  # no content size; a window descriptor
    else:
        out += bytes([0xE0]) + struct.pack("<Q", content_size)  # 8-byte content size
    for i, (kind, arg) in enumerate(blocks):
        size, payload, code = (len(arg), arg, 0) if kind == "raw" else (arg, b"\x07", 1)
        header = (size << 3) | (code << 1) | int(i == len(blocks) - 1)
        out += struct.pack("<I", header)[:3] + payload
    return bytes(out)


def test_zstd_content_size_is_read_from_the_frame_header():
    assert zstd_content_size(zstd_frame([("raw", b"abc")], content_size=3)) == 3
    assert zstd_content_size(zstd_frame([("raw", b"abc")])) is None
    assert zstd_content_size(b"not zstd") is None
    with pytest.raises(ValueError, match="truncated"):
        zstd_content_size(ZSTD_MAGIC + bytes([0xE0, 1, 2]))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        # claims 1 TB: refused from its header, nothing allocated
        (zstd_frame([("rle", 1000)], content_size=10**12), "claims to decode to 1000000000000"),
        # claims nothing and inflates to 100 MiB: stopped at the chunk's 32000 bytes
        (zstd_frame([("rle", 2**17)] * 800), "does not decode to its 32000 bytes"),
        # claims nothing and gives too little
        (zstd_frame([("raw", bytes(100))]), "does not decode to its 32000 bytes"),
    ],
)
@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_a_frame_producing_more_than_its_chunk_is_refused_unallocated(
    myogestic_dir, tmp_path, frame, match, kind
):
    folder = tmp_path / "s"
    shutil.copytree(myogestic_dir / "folder", folder)
    (folder / "emg.zarr" / "c" / "4" / "0").write_bytes(frame)  # 1000 x 8 float32 = 32000 B
    path = folder
    if kind == "zip":
        path = tmp_path / "s.session.zip"
        with zipfile.ZipFile(path, "w") as zf:  # valid CRCs: only the decoder's bound is left
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(folder).as_posix())
    with open_session_store(path) as store:
        np.testing.assert_array_equal(
            store.read_rows("emg", 0, 4000), plain_zarr(myogestic_dir / "folder", "emg.zarr")[:4000]
        )
        tracemalloc.start()
        try:
            with pytest.raises(SessionError, match=match) as caught:
                store.read_rows("emg", 3500, 4500)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert "stream 'emg'" in str(caught.value)
    assert "emg.zarr/c/4/0" in str(caught.value)
    assert str(path) in str(caught.value)
    assert peak < 2**20  # the chunk's buffer and the frame: nothing near what it claims


# -- layouts read through Zarr ------------------------------------------------------------------
def rewrite_emg(folder, **layout):
    """Re-write ``emg.zarr`` of a session folder with another layout (same numbers)."""
    values = zarr.open_array(str(folder / "emg.zarr"), mode="r")[:]
    shutil.rmtree(folder / "emg.zarr")
    array = zarr.create_array(
        store=str(folder / "emg.zarr"), shape=values.shape, dtype=values.dtype, **layout
    )
    array[:] = values
    return values


def test_other_layouts_read_through_zarr_chunk_by_chunk(myogestic_dir, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(myogestic_dir / "folder", folder)
    values = rewrite_emg(folder, chunks=(700, 4), compressors=[zarr.codecs.GzipCodec(level=1)])
    packed = tmp_path / "s.session.zip"
    with zipfile.ZipFile(packed, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(folder).as_posix())
    for path in (folder, packed):
        with open_session_store(path) as store:
            assert not store._array_chunks("emg", timestamps=False).raw
            np.testing.assert_array_equal(store.read_rows("emg", 0, 20000), values)
            np.testing.assert_array_equal(store.read_rows("emg", 650, 1450), values[650:1450])
    # A flipped byte in a gzip member of the zip: zipfile's CRC check, named by chunk row.
    with zipfile.ZipFile(packed) as zf:
        info = zf.getinfo("emg.zarr/c/2/1")
    raw = bytearray(packed.read_bytes())
    offset = (
        info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    )
    raw[offset] ^= 0x40
    packed.write_bytes(bytes(raw))
    with open_session_store(packed) as store:
        np.testing.assert_array_equal(store.read_rows("emg", 0, 1400), values[:1400])
        with pytest.raises(
            SessionError, match=r"emg\.zarr/c/2/\* cannot be read through Zarr.*c/2/1"
        ):
            store.read_rows("emg", 1000, 1500)


def test_arrays_with_chunks_over_the_cap_are_refused_before_reading(tmp_path):
    """Zarr would decode a 3.2 GB chunk to read one row: refused, nothing read."""
    big = zarr.create_array(
        store=str(tmp_path / "big.zarr"),
        shape=(10**9, 8),
        chunks=(10**8, 8),
        dtype="float32",
        compressors=[zarr.codecs.GzipCodec()],
    )
    chunks = ArrayChunks.open(big, where=str(tmp_path), stream="big")
    with pytest.raises(SessionError, match=r"big\.zarr has chunks of 3200000000 bytes.*refused"):
        chunks.read(0, 10)


# -- zarrs is an explicit opt-in -----------------------------------------------------------------
ZARRS_CHILD = """
import json, os
import zarr
config = lambda: zarr.config.get("codec_pipeline.path")
seen = {"before": config()}
import labsession, labsession.recording, labsession.sources
seen["after import"] = config()
from labsession.recording import use_zarrs
seen["env 1"] = [use_zarrs(), config()]
seen["off"] = [use_zarrs(False), config()]
os.environ["LABSESSION_ZARRS"] = "0"
seen["env 0"] = [use_zarrs(), config()]
del os.environ["LABSESSION_ZARRS"]
seen["env unset"] = [use_zarrs(), config()]
seen["on"] = [use_zarrs(True), config()]
print(json.dumps(seen))
"""


def test_importing_labsession_leaves_zarr_config_alone(monkeypatch):
    """Even with LABSESSION_ZARRS=1 set, only calling use_zarrs() switches the pipeline."""
    pytest.importorskip("zarrs")  # installed with the test extra
    monkeypatch.setenv("LABSESSION_ZARRS", "1")
    out = subprocess.run(
        [sys.executable, "-c", ZARRS_CHILD], capture_output=True, text=True, check=True
    ).stdout
    seen = json.loads(out)
    before, zarrs = seen["before"], "zarrs.ZarrsCodecPipeline"
    assert before != zarrs
    assert seen["after import"] == before
    assert seen["env 1"] == [True, zarrs]
    assert seen["off"] == [False, before]
    assert seen["env 0"] == [False, before]
    assert seen["env unset"] == [False, before]
    assert seen["on"] == [True, zarrs]


def test_a_session_being_recorded_reads_as_it_grows(tmp_path):
    """The writer's own arrays: verified reads see each flush, partial chunks included."""
    from labsession.recording import Session, StreamInfo

    values = np.arange(3000 * 2, dtype=np.float32).reshape(3000, 2)
    stamps = 10 + np.arange(3000) / 100
    with Session(tmp_path) as session:
        session.init_stream("s", StreamInfo(2, 100.0))
        session.append("s", values[:150], stamps[:150])
        data, ts = session.get_continuous("s")  # flushes first
        np.testing.assert_array_equal(data, values[:150])
        np.testing.assert_array_equal(ts, stamps[:150])
        session.append("s", values[150:], stamps[150:])
        session.flush()
        assert session.n_samples("s") == 3000
        np.testing.assert_array_equal(session.read_rows("s", 120, 2890), values[120:2890])
        np.testing.assert_array_equal(session.read_rows("s", 0, 3000, timestamps=True), stamps)


# -- sharded arrays (valid Zarr v3; neither MyoGestic nor labsession writes them) ----------------
def shard_session(source, folder, **codecs):
    """A copy of session folder ``source`` whose emg arrays are sharded: chunks of 100 rows in
    shards of 400, so the last shard is partly filled. Returns the values written."""
    shutil.copytree(source, folder)
    written = {}
    for name, fill in (("emg.zarr", 0), ("emg_timestamps.zarr", np.nan)):
        values = zarr.open_array(str(folder / name), mode="r")[:]
        shutil.rmtree(folder / name)
        array = zarr.create_array(
            store=str(folder / name),
            shape=values.shape,
            dtype=values.dtype,
            chunks=(100, *values.shape[1:]),
            shards=(400, *values.shape[1:]),
            fill_value=fill,
            **codecs,
        )
        array[:] = values
        written[name] = values
    assert len(written["emg.zarr"]) % 400, "the last shard must be partly filled"
    return written


def zip_folder(folder, target):
    with zipfile.ZipFile(target, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(folder).as_posix())
    return target


def test_sharded_arrays_read_whole_and_equal_plain_zarr(layouts, tmp_path):
    """Before: the listing counted shards but the length counted chunks of 100 rows, so a
    session of 2,275 rows read as the rows of 5 chunks (500)."""
    source = layouts["labsession folder"]
    folder = tmp_path / "sharded"
    written = shard_session(source, folder)
    packed = zip_folder(folder, tmp_path / "sharded.session.zip")
    expected_windows = iter_labeled_windows_of(source)
    values, stamps = written["emg.zarr"], written["emg_timestamps.zarr"]
    for path in (folder, packed):
        with open_session_store(path) as store:
            chunks = store._array_chunks("emg", timestamps=False)
            assert chunks.sharded
            assert chunks.chunk_rows == 400
            assert store.n_samples("emg") == len(values) == plain_zarr(path, "emg.zarr").shape[0]
            data, ts = store.get_continuous("emg")
            np.testing.assert_array_equal(data, plain_zarr(path, "emg.zarr")[:])
            np.testing.assert_array_equal(ts, stamps)
            n = len(values)
            for start, stop in ((0, n), (350, 870), (799, 801), (n - 50, n), (5, 5)):
                np.testing.assert_array_equal(
                    store.read_rows("emg", start, stop), values[start:stop]
                )
                np.testing.assert_array_equal(
                    store.read_rows("emg", start, stop, channels_first=True),
                    values[start:stop].T,
                )
        got = list(iter_labeled_windows_of(path))
        assert len(got) == len(expected_windows) > 0
        for (a, ta, la), (b, tb, lb) in zip(got, expected_windows, strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ta, tb)
            assert la == lb


def iter_labeled_windows_of(path):
    return [
        (w.copy(), ts.copy(), label) for w, ts, label in iter_labeled_windows(path, "emg", 0.2, 0.1)
    ]


def test_a_flipped_byte_in_a_partly_read_shard_of_a_zip_fails_its_crc(layouts, tmp_path):
    """Zarr reads the last, partly filled shard in pieces (its index, then each chunk), and
    zipfile checks a CRC only when a read reaches a member's end: labsession checks the whole
    shard against its CRC itself. Without a zstd checksum inside, only the CRC can tell."""
    folder = tmp_path / "sharded"
    values = shard_session(layouts["labsession folder"], folder, compressors=None)["emg.zarr"]
    packed = zip_folder(folder, tmp_path / "sharded.session.zip")
    last = (len(values) - 1) // 400
    member = f"emg.zarr/c/{last}/0"
    with zipfile.ZipFile(packed) as zf:
        info = zf.getinfo(member)
    raw = bytearray(packed.read_bytes())
    with zipfile.ZipFile(packed) as zf:
        shard = zf.read(member)  # uncompressed: the chunks' bytes, then the shard's index
    assert shard[:8] == values[last * 400].tobytes()[:8]  # the flip lands in the numbers
    name_len, extra_len = struct.unpack(
        "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
    )
    raw[info.header_offset + 30 + name_len + extra_len + 5] ^= 0x40  # row 400 * last, channel 1
    packed.write_bytes(bytes(raw))
    with open_session_store(packed) as store:
        np.testing.assert_array_equal(store.read_rows("emg", 0, last * 400), values[: last * 400])
        with pytest.raises(SessionError, match=rf"chunk {member} fails its CRC check"):
            store.read_rows("emg", last * 400, last * 400 + 1)


def test_a_named_pipe_in_a_shard_s_place_is_refused_at_once(layouts, tmp_path):
    """Arrays read through Zarr too: Zarr would block forever opening a named pipe."""
    folder = tmp_path / "sharded"
    shard_session(layouts["labsession folder"], folder)
    (folder / "emg.zarr" / "c" / "1" / "0").unlink()
    os.mkfifo(folder / "emg.zarr" / "c" / "1" / "0")

    def read():
        with open_session_store(folder) as store:
            return store.get_continuous("emg")

    outcome = finishes(read, seconds=5)
    assert isinstance(outcome, SessionError), outcome
    assert "chunk emg.zarr/c/1/0 is a named pipe, not a file" in str(outcome)


# -- a frame must carry the checksum its zarr.json promises --------------------------------------
def checksummed_folder(layouts, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(layouts["labsession folder"], folder)
    meta = json.loads((folder / "emg.zarr" / "zarr.json").read_text())
    assert meta["codecs"][1]["configuration"]["checksum"] is True
    return folder


def test_a_frame_without_the_promised_checksum_is_refused(layouts, tmp_path):
    """A chunk re-encoded without zstd's checksum (or with the flag cleared) decodes fine, so
    it would come back unverified: refused when zarr.json says checksum: true."""
    from numcodecs import Zstd

    folder = checksummed_folder(layouts, tmp_path)
    chunk = folder / "emg.zarr" / "c" / "1" / "0"
    original = chunk.read_bytes()
    with open_session_store(folder) as store:
        rows = store._array_chunks("emg", timestamps=False).chunk_rows
        values = store.read_rows("emg", rows, 2 * rows)
    changed = values.copy()
    changed[5, 0] = -1e30
    half = changed.tobytes()[: changed.nbytes // 2], changed.tobytes()[changed.nbytes // 2 :]
    cases = {
        "flag cleared": original[:4] + bytes([original[4] & ~0x04]) + original[5:-4],
        "re-encoded": Zstd(level=0, checksum=False).encode(changed.tobytes()),
        "second frame unchecked": Zstd(level=0, checksum=True).encode(half[0])
        + Zstd(level=0, checksum=False).encode(half[1]),
    }
    for case, frame in cases.items():
        chunk.write_bytes(frame)
        with open_session_store(folder) as store:
            with pytest.raises(
                SessionError, match=r"chunk emg\.zarr/c/1/0 cannot be verified"
            ) as e:
                store.read_rows("emg", rows + 2, rows + 8)
            assert "no content checksum" in str(e.value), case
            np.testing.assert_array_equal(
                store.read_rows("emg", 0, rows), plain_zarr(folder, "emg.zarr")[:rows]
            )
    chunk.write_bytes(original)
    with open_session_store(folder) as store:
        np.testing.assert_array_equal(store.read_rows("emg", rows, 2 * rows), values)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "holds no zstd frame"),
        (zstd_frame([("raw", b"abc")]) + b"junk", "offset 12 are not a zstd frame"),
        (zstd_frame([("raw", b"abc")])[:-1], "truncated"),
        (b"\x50\x2a\x4d\x18" + bytes(8), "offset 0 are not a zstd frame"),  # skippable frame
    ],
)
def test_zstd_frames_are_walked_whole(data, match):
    from labsession.recording._zstdframes import check_zstd_frames

    with pytest.raises(ValueError, match=match):
        check_zstd_frames(data, checksum=False)
    check_zstd_frames(zstd_frame([("raw", b"abc"), ("rle", 5)]), checksum=False)
    with pytest.raises(ValueError, match="no content checksum"):
        check_zstd_frames(zstd_frame([("raw", b"abc")]), checksum=True)
