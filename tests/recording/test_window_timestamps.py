"""Timestamps read for the label search are not decoded again by the window reader (issue 19)."""

import numpy as np
import pytest

from labsession.recording import _blocks, iter_labeled_windows, open_session_store

from .conftest import assert_same_windows, record_window_sessions, reference_labeled


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """Two labsession-written sessions: a zip and a folder (8 ch at 1 kHz, glove at 100 Hz)."""
    return record_window_sessions(tmp_path_factory.mktemp("win"))


def _count_chunk_decodes(monkeypatch):
    """Count, by (stream, timestamps?, chunk index), the chunks really decoded from now on."""
    from labsession.recording._chunks import ArrayChunks

    counts: dict[tuple[str, bool, int], int] = {}
    fill_raw = ArrayChunks._fill_raw

    def counting(self, read_file, out, start, stop, index, channels_first):
        key = (self.stream, self.timestamps, index)
        counts[key] = counts.get(key, 0) + 1
        return fill_raw(self, read_file, out, start, stop, index, channels_first)

    monkeypatch.setattr(ArrayChunks, "_fill_raw", counting)
    return counts


@pytest.mark.parametrize("copy", [True, False])
def test_label_search_timestamps_are_not_decoded_again(sessions, monkeypatch, copy):
    """Timestamps that fit in one block's bytes are decoded once per iteration: the label
    search hands its blocks to the window reader (windows unchanged)."""
    path = sessions[1]
    expected = reference_labeled(path, "emg", 200, 50)
    counts = _count_chunk_decodes(monkeypatch)
    got = list(iter_labeled_windows(path, "emg", 0.2, 0.05, copy=copy))
    assert_same_windows(got, expected)
    ts_decodes = {k: v for k, v in counts.items() if k[1]}
    with open_session_store(path) as store:
        n_ts_chunks = -(-store.n_samples("emg") // store.ts_stores["emg"].chunks[0])
    # Every timestamp chunk at least once; none twice except the last, which opening the
    # session reads to find the valid length.
    assert sorted(k[2] for k in ts_decodes) == list(range(n_ts_chunks))
    assert [k[2] for k, v in ts_decodes.items() if v > 1] in ([], [n_ts_chunks - 1])


@pytest.mark.parametrize("copy", [True, False])
def test_timestamps_longer_than_what_is_kept_give_the_same_windows(sessions, monkeypatch, copy):
    """Small blocks: only the first timestamp blocks are kept from the label search, the rest
    are read again; windows and stamps still equal the reference, and what is held stays
    bounded by the blocks (kept timestamps included)."""
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 16_000)  # keeps 2 of 6 timestamp blocks
    for path in sessions:
        expected = reference_labeled(path, "emg", 200, 50)
        counts = _count_chunk_decodes(monkeypatch)
        it = iter_labeled_windows(path, "emg", 0.2, 0.05, copy=copy)
        assert_same_windows(list(it), expected)
        twice = sorted(k[2] for k, v in counts.items() if k[1] and v > 1)
        assert twice[:2] == [2, 3], counts  # blocks 0 and 1 (chunks 0, 1) were kept
        assert 0 < it.peak_held_bytes <= 4 * 8 * 1000 * 4 + 16_000 + 2 * 8000


def test_block_reader_preload_is_served_counted_and_dropped(myogestic_session):
    """A preloaded block is returned without reading, held until requests move past it; one
    of the wrong size is ignored."""
    with open_session_store(myogestic_session) as store:
        n = store.n_samples("emg")
        full = store.get_timestamps("emg")
        reader = _blocks.BlockReader(
            store, "emg", n, dtype=np.float64, timestamps=True, block_bytes=2000 * 8
        )
        try:
            fake = np.full(2000, -1.0)  # not the stored stamps: proves it is served as given
            reader.preload(3, fake)
            reader.preload(4, np.zeros(10))  # wrong size: ignored
            assert reader.held_bytes == 2000 * 8
            np.testing.assert_array_equal(reader.get(0, 10), full[:10])
            assert reader.held_bytes == 2 * 2000 * 8  # kept beyond the read-ahead window
            np.testing.assert_array_equal(reader.get(6000, 6100), fake[:100])
            np.testing.assert_array_equal(reader.get(8000, 8100), full[8000:8100])
            assert reader.held_bytes == 2000 * 8  # block 3 dropped once passed
            np.testing.assert_array_equal(reader.get(6000, 6100), full[6000:6100])  # re-read
        finally:
            reader.close()


@pytest.mark.parametrize(
    ("keep_blocks", "kept"), [(2.5, [0, 1, 2]), (2.0, [0, 1]), (1.5, [0]), (0.5, [])]
)
def test_label_search_keeps_the_first_blocks_that_fit(myogestic_session, keep_blocks, kept):
    """The first timestamp blocks, the shorter last one too, are handed to the window reader
    as long as they fit in what it may keep, and no further."""
    with open_session_store(myogestic_session) as store:
        n = store.n_samples("emg")
        block = -(-n // 5) * 2  # 2.5 blocks: the last one half as long
        assert (n - 2 * block) * 8 <= block * 4
        reader = _blocks.BlockReader(
            store, "emg", n, dtype=np.float64, timestamps=True, block_bytes=block * 8
        )
        try:
            assert reader.block_rows == block
            targets = store.get_timestamps("emg")[[0, n // 2, n - 1]]
            found = _blocks.nearest_streamed(
                store,
                "emg",
                n,
                targets,
                block=block,
                keep=reader,
                keep_bytes=int(keep_blocks * block * 8),
            )
            assert found.tolist() == [0, n // 2, n - 1]
            assert sorted(reader._preloaded) == kept
        finally:
            reader.close()
