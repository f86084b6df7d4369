"""A single-writer ring buffer of the latest samples, readable without taking a lock."""

from __future__ import annotations

import numpy as np

__all__ = ["RingBuffer"]


class RingBuffer:
    """The latest ``capacity`` samples of a stream and their timestamps.

    One thread writes (the stream's acquisition thread); any thread may read. Readers never block
    the writer: a sequence counter is odd while a write is in progress, and a reader whose copy
    overlapped a write simply copies again (a seqlock).

    Parameters
    ----------
    capacity
        Samples kept.
    n_channels
        Channels per sample.
    dtype
        Sample type.
    """

    def __init__(self, capacity: int, n_channels: int, dtype: np.dtype | str = np.float32):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._data = np.zeros((self.capacity, n_channels), dtype=dtype)
        self._ts = np.full(self.capacity, np.nan)
        self._written = 0  # total samples ever written
        self._seq = 0

    @property
    def n_written(self) -> int:
        """Samples written since creation (also those already overwritten)."""
        return self._written

    def write(self, data: np.ndarray, ts: np.ndarray) -> None:
        """Append ``data (n, n_channels)`` and ``ts (n,)``; only the last ``capacity`` are kept."""
        n = data.shape[0]
        if n == 0:
            return
        if n > self.capacity:
            skipped, n = n - self.capacity, self.capacity
            data, ts = data[-n:], ts[-n:]
        else:
            skipped = 0
        self._seq += 1
        start = (self._written + skipped) % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = data[:first]
        self._ts[start : start + first] = ts[:first]
        if first < n:
            self._data[: n - first] = data[first:]
            self._ts[: n - first] = ts[first:]
        self._written += n + skipped
        self._seq += 1

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Copy of the last ``min(n, available)`` samples: ``(data (n, n_channels), ts (n,))``."""
        data, ts, _ = self.latest_counted(n)
        return data, ts

    def latest_counted(self, n: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Like :meth:`latest`, with :attr:`n_written` read in the same consistent copy.

        Returns
        -------
        data : ndarray, shape (k, n_channels)
        ts : ndarray, shape (k,)
            The last ``k = min(n, available)`` samples and their timestamps.
        n_written
            Samples written when the copy was taken: ``data[-1]`` is sample ``n_written - 1``
            (counting from 0), whatever the timestamps say (repeated, backwards or NaN).
        """
        while True:
            seq = self._seq
            if seq % 2:
                continue
            written = self._written
            k = min(n, written, self.capacity)
            idx = (np.arange(written - k, written)) % self.capacity
            data, ts = self._data[idx], self._ts[idx]
            if self._seq == seq:
                return data, ts, written
