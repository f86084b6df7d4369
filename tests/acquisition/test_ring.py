import threading

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from labsession.acquisition import RingBuffer


@given(st.integers(1, 50), st.lists(st.integers(0, 120), max_size=20), st.integers(1, 80))
def test_latest_equals_tail_of_everything_written(capacity, sizes, n):
    ring = RingBuffer(capacity, 2, np.int64)
    written, total = [], 0
    for size in sizes:
        index = np.arange(total, total + size)
        ring.write(np.stack([index, -index], axis=1), index.astype(float))
        written.extend(index)
        total += size
    data, ts = ring.latest(n)
    expected = np.array(written[-min(n, capacity) :] if written else [], dtype=np.int64)
    np.testing.assert_array_equal(data[:, 0], expected)
    np.testing.assert_array_equal(ts, expected.astype(float))
    assert ring.n_written == total


def test_reader_never_sees_a_torn_window():
    ring = RingBuffer(1000, 1, np.int64)
    stop = threading.Event()

    def write():
        i = 0
        while not stop.is_set():
            index = np.arange(i, i + 37)
            ring.write(index[:, None], index.astype(float))
            i += 37

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(2000):
            data, ts = ring.latest(500)
            if len(ts) > 1:
                assert (np.diff(data[:, 0]) == 1).all()
                np.testing.assert_array_equal(data[:, 0], ts)
    finally:
        stop.set()
        writer.join()


@given(st.integers(1, 50), st.lists(st.integers(0, 120), max_size=20), st.integers(1, 80))
def test_latest_counted_is_latest_with_the_count(capacity, sizes, n):
    ring = RingBuffer(capacity, 1, np.int64)
    total = 0
    for size in sizes:
        index = np.arange(total, total + size)
        ring.write(index[:, None], np.full(size, np.nan))  # timestamps say nothing
        total += size
    data, ts, written = ring.latest_counted(n)
    latest_data, latest_ts = ring.latest(n)
    assert written == total == ring.n_written
    np.testing.assert_array_equal(data, latest_data)
    np.testing.assert_array_equal(ts, latest_ts)
    # The newest sample copied is sample written - 1: the count locates every sample.
    np.testing.assert_array_equal(data[:, 0], np.arange(written - len(data), written))


def test_latest_counted_is_consistent_under_a_concurrent_writer():
    ring = RingBuffer(64, 1, np.int64)
    stop = threading.Event()

    def writer():
        total = 0
        while not stop.is_set():
            ring.write(np.arange(total, total + 7)[:, None], np.zeros(7))
            total += 7

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(2000):
            data, _, written = ring.latest_counted(50)
            np.testing.assert_array_equal(data[:, 0], np.arange(written - len(data), written))
    finally:
        stop.set()
        thread.join()
