"""Window iterators: MyoGestic's results on its own files, chunk-wise reading, checks, skips."""

import hashlib
import itertools
import logging
import shutil
import tracemalloc
import zipfile

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labsession.errors import SessionError
from labsession.recording import (
    Session,
    StreamInfo,
    WindowIterator,
    _blocks,
    iter_aligned_windows,
    iter_labeled_windows,
    open_session_store,
)
from labsession.recording._segments import nearest_index
from labsession.recording._windows import seconds_to_samples

from .conftest import assert_same_windows, record_window_sessions, reference_labeled


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """Two labsession-written sessions: a zip and a folder (8 ch at 1 kHz, glove at 100 Hz)."""
    return record_window_sessions(tmp_path_factory.mktemp("win"))


# -- MyoGestic's own output on its own files -----------------------------------------------------
@pytest.mark.parametrize(
    ("key", "win", "hop", "classes"),
    [("w200_h100", 0.2, 0.1, None), ("w250_h50_cls12", 0.25, 0.05, {1, 2})],
)
def test_labeled_windows_equal_myogestic(
    myogestic_session, myogestic_expected, key, win, hop, classes
):
    expected = myogestic_expected[key]
    got = list(iter_labeled_windows([myogestic_session], "emg", win, hop, classes))
    assert len(got) == len(expected)
    for (window, ts, cls), (e_cls, first, last, shape, sha) in zip(got, expected, strict=True):
        assert cls == e_cls
        assert ts[0] == pytest.approx(first, abs=1e-9)
        assert ts[-1] == pytest.approx(last, abs=1e-9)
        assert list(window.shape) == shape
        assert window.dtype == np.float32
        assert digest(window) == sha


def test_aligned_windows_equal_myogestic(myogestic_session, myogestic_expected):
    expected = myogestic_expected["aligned_w200_h50_a3"]
    got = list(iter_aligned_windows([myogestic_session], "emg", ["glove"], 0.2, 0.05, 3))
    assert len(got) == len(expected)
    for (window, aligned, ts), (first, shape, sha, glove) in zip(got, expected, strict=True):
        assert ts[0] == pytest.approx(first, abs=1e-9)
        assert list(window.shape) == shape
        assert digest(window) == sha
        assert set(aligned) == {"glove"}
        assert aligned["glove"].dtype == np.float32
        np.testing.assert_array_equal(aligned["glove"], np.asarray(glove, dtype=np.float32))


def test_labeled_windows_equal_reference_on_labsession_files(sessions):
    for path in sessions:
        for win, hop, classes in [(0.2, 0.05, None), (0.29, 0.07, {1}), (0.05, 0.0001, {2})]:
            got = list(iter_labeled_windows(path, "emg", win, hop, classes))
            assert_same_windows(
                got, reference_labeled(path, "emg", win * 1000, hop * 1000, classes)
            )
            assert got


# -- sample counts -------------------------------------------------------------------------------
def test_seconds_to_samples_has_no_float_slop():
    assert int(0.29 * 100) == 28  # the trap
    assert seconds_to_samples(0.29, 100.0) == 29
    assert seconds_to_samples(0.2, 2000.0) == 400
    assert seconds_to_samples(0.05, 2048.0) == 102  # floor of 102.4
    assert seconds_to_samples(0.0001, 1000.0) == 0
    for fs in (100.0, 512.0, 1000.0, 2000.0, 2048.0, 4000.0):
        for ms in range(1, 1001):
            exact = ms * int(fs) // 1000
            assert seconds_to_samples(ms / 1000, fs) == exact, (ms, fs)


def test_window_length_and_hop_in_samples(tmp_path):
    """0.29 s windows at 100 Hz hold 29 samples; a hop under one sample steps by one."""
    session = Session(tmp_path, class_names=["a", "b"])
    session.init_stream("s", StreamInfo(2, 100.0))
    session.append("s", np.arange(400, dtype=np.float32).reshape(200, 2), np.arange(200) / 100)
    session.add_label(1, timestamp=0.0)
    session.close()
    windows = list(iter_labeled_windows(session.path, "s", 0.29, 0.001))
    assert {w.shape for w, _, _ in windows} == {(2, 29)}
    assert len(windows) == 200 - 29 + 1
    assert [ts[0] for _, ts, _ in windows[:3]] == pytest.approx([0.0, 0.01, 0.02])


# -- chunk-wise reading and views ----------------------------------------------------------------
def test_small_blocks_give_the_same_windows(sessions, monkeypatch):
    """Blocks of one chunk (the smallest) give exactly what large blocks give."""
    path = sessions[0]
    big = list(iter_labeled_windows(path, "emg", 0.3, 0.1))
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 1)
    small = list(iter_labeled_windows(path, "emg", 0.3, 0.1))
    assert_same_windows(small, big)
    aligned_big = list(iter_aligned_windows(path, "emg", ["glove"], 0.3, 0.1, 5))
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 8 * 2**20)
    aligned_small = list(iter_aligned_windows(path, "emg", ["glove"], 0.3, 0.1, 5))
    for a, b in zip(aligned_small, aligned_big, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1]["glove"], b[1]["glove"])


def _long_session(base, seconds, channels=32, fs=2000.0):
    session = Session(base, class_names=["a", "b"])
    session.init_stream("emg", StreamInfo(channels, fs))
    block = np.random.default_rng(0).standard_normal((20_000, channels)).astype(np.float32)
    for k in range(int(seconds * fs) // 20_000):
        session.append("emg", block, (np.arange(20_000) + k * 20_000) / fs)
    for t in range(0, int(seconds), 5):
        session.add_label(t % 2, timestamp=float(t))
    return session.pack_to_zip()


#: Bytes an iteration allocates besides the blocks its readers count: at most one chunk per
#: decode thread (256 kB here) and its compressed bytes, the label search's timestamp blocks,
#: the archive's directory, one window. A constant: it does not grow with the session.
UNCOUNTED_BYTES = 3 * 2**20


def test_memory_does_not_grow_with_the_session(tmp_path, monkeypatch):
    """1 MiB blocks: a 51 MB stream iterates holding what one half as long holds.

    The readers count the bytes they hold (blocks read ahead in full from the moment they are
    asked for), so the figure does not depend on the read-ahead thread's timing: equal for
    100 s and 200 s, four blocks at most. What Python really allocated (tracemalloc) stays
    within that count plus a constant.
    """
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 2**20)
    held, peaks = {}, {}
    for seconds in (100, 200):
        path = _long_session(tmp_path / str(seconds), seconds)
        for copy in (True, False):
            tracemalloc.start()
            try:
                it = iter_labeled_windows(path, "emg", 0.2, 0.05, copy=copy)
                count = sum(1 for _ in it)
                peaks[seconds, copy] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            held[seconds, copy] = it.peak_held_bytes
            assert count == seconds // 5 * ((10_000 - 400) // 100 + 1)
    blocks = 2**20 + 2**20 // 8  # a block of samples and one of timestamps (1/8 block)
    for copy in (True, False):
        assert held[100, copy] == held[200, copy], held
        assert 2**20 <= held[200, copy] <= 4 * blocks, held
        for seconds in (100, 200):
            assert peaks[seconds, copy] <= held[seconds, copy] + UNCOUNTED_BYTES, (peaks, held)


def test_block_reader_counts_what_it_holds(myogestic_session):
    """held_bytes: the blocks held, one being read ahead counted in full; dropped ones freed."""
    with open_session_store(myogestic_session) as store:
        n = store.n_samples("emg")
        block = 2000 * 8 * 4  # 2000 rows of 8 float32 channels
        reader = _blocks.BlockReader(store, "emg", n, block_bytes=block, prefetch=True)
        try:
            assert reader.held_bytes == 0
            reader.get(0, 10)  # block 0, and block 1 asked for ahead
            assert reader.held_bytes == 2 * block
            reader.get(1990, 2010)  # straddles 0 and 1; block 2 ahead
            assert reader.held_bytes == 3 * block
            reader.get(4100, 4200)  # block 2; 0 and 1 dropped, 3 ahead
            assert reader.held_bytes == 2 * block
            reader.get(n - 5, n)  # the last block: nothing left to read ahead
            assert reader.held_bytes == block
            assert reader.peak_held_bytes == 3 * block
        finally:
            reader.close()
        assert reader.held_bytes == 0


def _stepped_stamps() -> np.ndarray:
    ts = np.arange(3000) / 100.0
    ts[1200:1300] -= 0.5  # the clock stepped back
    ts[2000:2010] = ts[2000]  # repeated stamps
    return ts


def test_nearest_streamed_equals_argmin_on_any_threads_and_blocks(tmp_path):
    """The label search's blocks, read on threads and merged, give argmin's first index:
    stamps that step back (so a later block holds stamps nearer an earlier target), and
    targets exactly between two stamps (ties)."""
    ts = _stepped_stamps()
    session = Session(tmp_path, class_names=["a"])
    session.init_stream("s", StreamInfo(1, 100.0))
    session.append("s", np.zeros((len(ts), 1), dtype=np.float32), ts)
    session.close()
    with open_session_store(session.path) as store:
        # as stored: the writer keeps the 0.5 s step back, and mends repeats into tiny steps
        ts = store.get_timestamps("s")
        assert np.diff(ts).min() < -0.4
        targets = np.concatenate(
            [[-5.0, 11.75, 12.005, 20.0, 20.005, 99.0], (ts[:-1:37] + ts[1::37]) / 2, ts[::53]]
        )
        expected = np.array([np.argmin(np.abs(ts - t)) for t in targets])
        for threads, block in itertools.product((1, 2, 3), (100, 1000, 1024, 4000)):
            got = _blocks.nearest_streamed(
                store, "s", len(ts), targets, block=block, threads=threads
            )
            np.testing.assert_array_equal(got, expected, err_msg=f"{threads=} {block=}")


def test_unsorted_and_repeated_timestamps_match_the_reference(tmp_path, monkeypatch):
    """Clock steps back and repeated stamps: nearest samples still equal argmin's, across blocks."""
    ts = _stepped_stamps()
    session = Session(tmp_path, class_names=["a", "b", "c"])
    session.init_stream("s", StreamInfo(2, 100.0))
    data = np.random.default_rng(1).standard_normal((3000, 2)).astype(np.float32)
    session.append("s", data, ts)
    for t, cls in [(1.0, 0), (11.7, 1), (12.2, 2), (20.03, 0), (20.0, 1), (25.0, -1), (26.0, 2)]:
        session.add_label(cls, timestamp=t)
    session.close()
    expected = reference_labeled(session.path, "s", 200, 50)
    for block_bytes in (1, 8 * 2**20):  # one chunk per block, and one block for all
        monkeypatch.setattr(_blocks, "BLOCK_BYTES", block_bytes)
        assert_same_windows(list(iter_labeled_windows(session.path, "s", 0.2, 0.05)), expected)


@given(
    arrays(np.float64, st.integers(1, 60), elements=st.floats(-50, 50)),
    arrays(np.float64, st.integers(1, 10), elements=st.floats(-60, 60)),
)
def test_nearest_many_equals_argmin(ts, targets):
    for series in (np.sort(ts), np.round(np.sort(ts)), ts):
        expected = [int(np.argmin(np.abs(series - t))) for t in targets]
        assert nearest_index(series, targets).tolist() == expected


def test_views_without_copy(sessions):
    path = sessions[1]
    copies = list(iter_labeled_windows(path, "emg", 0.2, 0.1))
    views = list(iter_labeled_windows(path, "emg", 0.2, 0.1, copy=False))
    assert_same_windows(views, copies)
    window, ts, _ = views[0]
    assert not window.flags.writeable
    assert not ts.flags.writeable
    assert not window.flags.owndata
    assert window.base is not None
    assert copies[0][0].flags.c_contiguous
    assert copies[0][0].flags.writeable
    copies[0][0][:] = 0  # a copy is the caller's own
    assert np.any(views[0][0] != 0)


def test_mixed_folders_and_zips_in_order(sessions):
    both = list(iter_labeled_windows(list(sessions), "emg", 0.2, 0.1))
    each = [w for p in sessions for w in iter_labeled_windows(p, "emg", 0.2, 0.1)]
    assert_same_windows(both, each)


def test_skip_first_drops_the_first_labelled_segment(sessions):
    path = sessions[0]
    every = list(iter_labeled_windows(path, "emg", 0.2, 0.1))
    kept = list(iter_labeled_windows(path, "emg", 0.2, 0.1, skip_first=True))
    with open_session_store(path) as store:
        first_stop = store.label_track[1].timestamp
    dropped = [w for w in every if w[1][0] < first_stop - 1e-9]
    assert dropped
    assert len(every) == len(kept) + len(dropped)
    assert_same_windows(kept, every[len(dropped) :])


def test_windows_never_cross_a_label_boundary(tmp_path):
    session = Session(tmp_path, class_names=["a", "b", "c"])
    session.init_stream("s", StreamInfo(1, 100.0))
    session.append("s", np.zeros((1000, 1), np.float32), np.arange(1000) / 100)
    bounds = [0.0, 1.234, 2.0, 3.0, 4.56, 4.6, 7.77]
    classes = [0, 1, -1, 2, 1, 0, 2]
    for t, cls in zip(bounds, classes, strict=True):
        session.add_label(cls, timestamp=t)
    session.close()
    windows = list(iter_labeled_windows(session.path, "s", 0.25, 0.1))
    for _, ts, cls in windows:
        k = max(i for i, b in enumerate(bounds) if b <= ts[0] + 0.005)
        assert ts[-1] < (bounds[k + 1] if k + 1 < len(bounds) else np.inf) - 0.005
        assert cls == classes[k] != -1
    # The 0.04 s segment of class 1 at 4.56 s is shorter than a window: none from it.
    assert not [ts for _, ts, _ in windows if 4.55 < ts[0] < 4.6]
    assert [c for _, _, c in windows].count(2) == 13 + 21


# -- checks and skipped sessions -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("win", "hop", "match"),
    [
        (0, 0.1, "win_seconds"),
        (-0.2, 0.1, "win_seconds"),
        (0.2, 0.0, "hop_seconds"),
        (float("nan"), 0.1, "win_seconds"),
        (0.2, float("inf"), "hop_seconds"),
    ],
)
def test_bad_window_or_hop_is_refused(sessions, win, hop, match):
    with pytest.raises(ValueError, match=match):
        iter_labeled_windows(sessions[0], "emg", win, hop)
    with pytest.raises(ValueError, match=match):
        iter_aligned_windows(sessions[0], "emg", ["glove"], win, hop)


def test_argument_errors_name_the_problem(sessions, tmp_path):
    with pytest.raises(ValueError, match=r"no session recorded stream\(s\) \['eeg'\].*'emg'"):
        iter_labeled_windows(list(sessions), "eeg", 0.2, 0.1)
    # No session has the aligned stream: nothing is yielded, as MyoGestic's, and no error.
    assert list(iter_aligned_windows(sessions[0], "emg", ["mocap"], 0.2, 0.1)) == []
    with pytest.raises(ValueError, match="paths is empty"):
        iter_labeled_windows([], "emg", 0.2, 0.1)
    with pytest.raises(ValueError, match="align_window_samples"):
        iter_aligned_windows(sessions[0], "emg", ["glove"], 0.2, 0.1, 0)
    with pytest.raises(TypeError, match="win_seconds"):
        iter_labeled_windows(sessions[0], "emg", "0.2", 0.1)
    with pytest.raises(SessionError, match="none of the 1 session"):
        iter_labeled_windows(tmp_path / "missing", "emg", 0.2, 0.1)
    unlabelled = Session(tmp_path / "u")
    unlabelled.init_stream("emg", StreamInfo(2, 100.0))
    unlabelled.append("emg", np.zeros((100, 2), np.float32), np.arange(100) / 100)
    unlabelled.add_label(-1, timestamp=0.0)
    unlabelled.close()
    with pytest.raises(ValueError, match="has a label"):
        iter_labeled_windows(unlabelled.path, "emg", 0.2, 0.1)
    # Aligned windows need no labels.
    assert len(list(iter_aligned_windows(unlabelled.path, "emg", ["emg"], 0.2, 0.1))) == 9


def test_skipped_sessions_are_listed_and_logged(sessions, tmp_path, caplog):
    no_labels = Session(tmp_path / "a")
    no_labels.init_stream("emg", StreamInfo(8, 1000.0))
    no_labels.append("emg", np.zeros((500, 8), np.float32), np.arange(500) / 1000)
    no_labels.close()
    other_stream = Session(tmp_path / "b", class_names=["x"])
    other_stream.init_stream("eeg", StreamInfo(4, 250.0))
    other_stream.append("eeg", np.zeros((500, 4), np.float32), np.arange(500) / 250)
    other_stream.add_label(0, timestamp=0.0)
    other_stream.close()
    corrupt = tmp_path / "broken.session.zip"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    paths = [no_labels.path, sessions[0], tmp_path / "nowhere", other_stream.path, corrupt]

    with caplog.at_level(logging.INFO, logger="labsession.recording._windows"):
        it = iter_labeled_windows(paths, "emg", 0.2, 0.1)
        assert isinstance(it, WindowIterator)
        got = list(it)
    assert_same_windows(got, list(iter_labeled_windows(sessions[0], "emg", 0.2, 0.1)))
    assert it.n_windows == len(got)
    assert it.n_sessions == 1
    reasons = {s.path: s.reason for s in it.skipped}
    assert set(reasons) == {no_labels.path, tmp_path / "nowhere", other_stream.path, corrupt}
    assert "no labels" in reasons[no_labels.path]
    assert "cannot be opened" in reasons[tmp_path / "nowhere"]
    assert "no stream 'emg'" in reasons[other_stream.path]
    assert "eeg" in reasons[other_stream.path]
    assert "cannot be opened" in reasons[corrupt]
    summary = it.summary()
    assert f"{len(got)} windows from 1 session(s); 4 skipped" in summary
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert all("skipping" in w for w in warnings)
    assert summary in [r.getMessage() for r in caplog.records]


def test_too_short_and_filtered_out_sessions_say_so(sessions):
    it = iter_labeled_windows(sessions[0], "emg", 5.0, 0.1)
    assert list(it) == []
    assert "fewer than one window" in it.skipped[0].reason or "as long as" in it.skipped[0].reason
    it = iter_labeled_windows(sessions[0], "emg", 0.2, 0.1, classes={7})
    assert list(it) == []
    assert "of classes [7]" in it.skipped[0].reason


def test_abandoned_iteration_closes_the_session(sessions):
    """Stopping early releases the zip (warnings are errors here: a leaked handle would fail)."""
    it = iter_labeled_windows(list(sessions), "emg", 0.2, 0.1)
    with it:
        next(it)
        assert it.current_index == 0
    with pytest.raises(StopIteration):
        next(it)


def test_crashed_recording_is_trimmed_to_valid_samples(tmp_path):
    """A stream whose last timestamps are NaN (crash mid-write) yields only written samples."""
    session = Session(tmp_path, class_names=["a"])
    session.init_stream("s", StreamInfo(1, 100.0))
    session.append("s", np.ones((300, 1), np.float32), np.arange(300) / 100)
    session.add_label(0, timestamp=0.0)
    session.close()
    ts = zarr.open_array(str(session.path / "s_timestamps.zarr"), mode="r+")
    assert ts.shape == (300,)
    ts[250:] = np.nan
    # The close recorded 300 rows, which a crash never does: as it is, the session is damaged.
    with pytest.raises(SessionError, match=r"closed with 300 rows .* only 250 rows of the"):
        list(iter_labeled_windows(session.path, "s", 0.5, 0.5))
    for name in ("s.zarr", "s_timestamps.zarr"):  # as a crash leaves them
        array = zarr.open_array(str(session.path / name), mode="r+")
        array.attrs["labsession"] = {
            k: v for k, v in array.attrs["labsession"].items() if k != "closed_rows"
        }
    windows = list(iter_labeled_windows(session.path, "s", 0.5, 0.5))
    assert len(windows) == 5
    assert windows[-1][1][-1] == pytest.approx(2.49)


def test_aligned_values_average_around_the_nearest_sample(tmp_path):
    session = Session(tmp_path)
    session.init_stream("p", StreamInfo(1, 100.0))
    session.append("p", np.zeros((100, 1), np.float32), np.arange(100) / 100)
    session.init_stream("a", StreamInfo(2, 10.0))
    values = np.stack([np.arange(10), -np.arange(10)], axis=1).astype(np.float32)
    session.append("a", values, np.arange(10) / 10 + 0.001)
    session.close()
    got = list(iter_aligned_windows(session.path, "p", ["a"], 0.2, 0.2, 3))
    assert len(got) == 5
    # Window k spans samples 20k..20k+19; its middle (sample 20k+10) is at 0.2k + 0.1 s, nearest
    # aligned sample 2k+1; mean of samples 2k, 2k+1, 2k+2 (clipped at the end).
    expected = [np.mean(values[max(0, 2 * k) : min(10, 2 * k + 3)], axis=0) for k in range(5)]
    for (_, aligned, _), e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(aligned["a"], e)


# -- chunk reads -----------------------------------------------------------------------------
def test_missing_chunk_reads_as_fill_value_like_zarr(myogestic_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(myogestic_dir / "folder", folder)
    (folder / "emg.zarr" / "c" / "3" / "0").unlink()
    with open_session_store(folder) as store:
        array = store.stores["emg"]
        np.testing.assert_array_equal(store.read_rows("emg", 2500, 4500), array[2500:4500])
        assert not store.read_rows("emg", 3000, 4000).any()


def test_deflated_zip_gives_the_same_windows(myogestic_dir, myogestic_expected, tmp_path):
    """An archive re-packed with compression reads alike (each member inflated and CRC-checked)."""
    deflated = tmp_path / "deflated.session.zip"
    folder = myogestic_dir / "folder"
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(folder).as_posix())
    got = list(iter_labeled_windows(deflated, "emg", 0.2, 0.1))
    assert [digest(w) for w, _, _ in got] == [row[4] for row in myogestic_expected["w200_h100"]]


@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("prefetch", [False, True])
def test_block_reader_serves_any_range(myogestic_session, prefetch, channels_first):
    """Forward, backward, straddling and longer-than-a-block requests all equal Zarr's slices."""
    rng = np.random.default_rng(0)
    with open_session_store(myogestic_session) as store:
        full = store.stores["emg"][:]
        n = full.shape[0]
        reader = _blocks.BlockReader(
            store,
            "emg",
            n,
            block_bytes=2000 * 32,
            prefetch=prefetch,
            channels_first=channels_first,
        )
        if channels_first:
            full = full.T
        try:
            assert reader.block_rows == 2000
            starts = [*range(0, n - 300, 137), *rng.integers(0, n - 1, 40).tolist()]
            for start in starts:
                for length in (1, 300, 1999, 2001, 4500):
                    stop = min(n, start + length)
                    got = reader.get(start, stop)
                    np.testing.assert_array_equal(
                        got, full[..., start:stop] if channels_first else full[start:stop]
                    )
                    assert not got.flags.writeable
        finally:
            reader.close()


def test_an_iterator_dropped_mid_loop_releases_its_threads_at_once(sessions):
    """No reference cycle: dropping the iterator stops its read-ahead and decode threads."""
    import gc
    import threading

    path = sessions[0]  # the zip
    gc.disable()  # the threads must go without the cycle collector's help
    try:
        before = threading.active_count()
        for _ in range(5):
            it = iter_labeled_windows(path, "emg", 0.2, 0.05)
            next(it)
            assert threading.active_count() > before  # reading ahead
            del it
        assert threading.active_count() == before
    finally:
        gc.enable()
