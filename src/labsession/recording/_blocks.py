"""Chunk-wise reading of a stream for iterators: :class:`BlockReader` and streamed lookups.

Window iterators and :class:`~labsession.sources.ReplaySource` read sessions larger than RAM
through :class:`BlockReader`, which holds a few blocks of about :data:`BLOCK_BYTES` and reads
the next one ahead on a worker thread, counting the bytes it holds
(:attr:`BlockReader.held_bytes`). Every read is a verified read of
:mod:`labsession.recording._chunks`.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

import numpy as np

from labsession.errors import SessionError
from labsession.recording._segments import nearest_index

if TYPE_CHECKING:
    from labsession.recording._reader import SessionReader

__all__ = ["BLOCK_BYTES", "BlockReader", "nearest_streamed"]

#: Target size of the block of samples held in memory per stream while iterating (bytes).
BLOCK_BYTES = 4 * 2**20

_FLOAT32 = np.dtype(np.float32)


class BlockReader:
    """Rows ``[start, stop)`` of one stream, read one block (whole chunks) at a time.

    Blocks are ``[k * block, (k + 1) * block)``: every chunk is decoded once. A request inside
    a block is a view of it; one straddling two blocks is a new array joined from both; one
    longer than a block is read on its own. Each block is a fresh read-only array, so views
    handed out earlier stay valid (and unchanged) later. With ``prefetch=True`` a worker thread
    reads the next block while the caller works on the current one (requests must then move
    forward, as window iterators do; others still work, only without the head start). Call
    :meth:`close` to stop the worker.

    With ``channels_first=True`` (2-D streams) each block is transposed once, as it is read, to
    ``(n_channels, block)`` C order, and :meth:`get` returns ``(n_channels, stop - start)``:
    overlapping windows then cost one transposition per sample instead of one per window, and
    copying a window is a copy of contiguous rows.

    Reads are those of :meth:`SessionReader.read_rows`: verified, and a corrupt chunk raises
    :class:`SessionError` naming it. A block that fails is not kept; requests inside it are
    then read on their own, so only those that touch the corrupt chunk fail.

    Memory: at most four blocks are held (the one before, for a request straddling two, the
    current one and two read ahead); :attr:`held_bytes` counts them, a block being read ahead
    at its full size from the moment it is asked for, and :attr:`peak_held_bytes` the most held
    at once; blocks handed over already read (:meth:`preload`) are held, and counted, until
    requests move past them. Decoding adds at most one chunk per decoding thread (the
    caller's, the prefetch worker's and their decode pool's).
    """

    def __init__(
        self,
        store: SessionReader,
        name: str,
        n: int,
        *,
        dtype: np.dtype | None = _FLOAT32,
        block_bytes: int | None = None,
        prefetch: bool = False,
        timestamps: bool = False,
        channels_first: bool = False,
    ):
        self._store, self._name, self._n = store, name, n
        chunks = store._array_chunks(name, timestamps=timestamps)
        shape = chunks.shape
        if channels_first and len(shape) != 2:
            raise ValueError(f"channels_first needs a 2-D stream; {name!r} has shape {shape}")
        self._chunks = chunks
        self._channels_first = channels_first
        self._dtype = np.dtype(dtype) if dtype is not None else chunks.dtype
        # Readers that prefetch also decode each block's chunks on two threads: the reading
        # thread takes half of them, this pool the other half.
        self._decode_pool = ThreadPoolExecutor(2, "labsession-decode") if prefetch else None
        itemsize = max(chunks.dtype.itemsize, self._dtype.itemsize)
        row_bytes = max(1, math.prod(shape[1:])) * itemsize
        self._out_row_bytes = max(1, math.prod(shape[1:])) * self._dtype.itemsize
        target = BLOCK_BYTES if block_bytes is None else block_bytes
        rows = chunks.chunk_rows
        self._block = max(rows, target // row_bytes // rows * rows)
        self._blocks: dict[int, np.ndarray | Future[np.ndarray]] = {}
        self._failed: set[int] = set()
        self._pool = ThreadPoolExecutor(1, "labsession-prefetch") if prefetch else None
        self._held = 0
        #: The most bytes held at once (see :attr:`held_bytes`).
        self.peak_held_bytes = 0
        # (first row, end row, block) of the block the last request fell in: the next requests
        # (overlapping windows) are mostly inside it and are sliced without any bookkeeping.
        self._current: tuple[int, int, np.ndarray] | None = None
        self._preloaded: set[int] = set()

    @property
    def block_rows(self) -> int:
        """Rows per block (a whole number of chunks)."""
        return self._block

    @property
    def held_bytes(self) -> int:
        """Bytes of the blocks held now, blocks being read ahead counted at their full size."""
        return self._held

    def preload(self, k: int, block: np.ndarray) -> None:
        """Hold ``block`` (rows of block ``k``, read already) so that it is not read again.

        It is held (and counted in :attr:`held_bytes`) until requests move past it.
        """
        lo, hi = k * self._block, min((k + 1) * self._block, self._n)
        if k in self._blocks or block.shape[0] != hi - lo or block.dtype != self._dtype:
            return
        if self._channels_first:
            block = np.ascontiguousarray(block.T)
        block.flags.writeable = False
        self._blocks[k] = block
        self._preloaded.add(k)
        self._hold(k)

    def _hold(self, k: int, sign: int = 1) -> None:
        lo, hi = k * self._block, min((k + 1) * self._block, self._n)
        self._held += sign * max(0, hi - lo) * self._out_row_bytes
        self.peak_held_bytes = max(self.peak_held_bytes, self._held)

    def _read(self, start: int, stop: int) -> np.ndarray:
        block = self._chunks.read(
            start, stop, pool=self._decode_pool, channels_first=self._channels_first
        )
        block = block.astype(self._dtype, copy=False)
        block.flags.writeable = False
        return block

    def _load(self, k: int) -> np.ndarray:
        return self._read(k * self._block, min((k + 1) * self._block, self._n))

    def _drop(self, k: int) -> None:
        stale = self._blocks.pop(k)
        self._preloaded.discard(k)
        if self._current is not None and self._current[0] == k * self._block:
            self._current = None
        if isinstance(stale, Future) and not stale.cancel():
            wait([stale])  # a read under way holds its memory until it ends
        self._hold(k, -1)

    def _get_block(self, k: int, keep_from: int) -> np.ndarray:
        """Block ``k``, prefetching ``k + 1``; drops blocks before ``keep_from`` or after
        ``k + 2``."""
        blocks = self._blocks
        for old in [j for j in blocks if j < keep_from or (j > k + 2 and j not in self._preloaded)]:
            self._drop(old)
        entry = blocks.get(k)
        if not isinstance(entry, np.ndarray):
            if entry is None:
                self._hold(k)  # counted while it is read
            load = functools.partial(self._load, k) if entry is None else entry.result
            try:
                entry = self._store._read(self._name, load)
            except SessionError:
                self._failed.add(k)
                blocks.pop(k, None)
                self._hold(k, -1)
                raise
            blocks[k] = entry
        nxt = k + 1
        if (
            self._pool is not None
            and nxt not in blocks
            and nxt * self._block < self._n
            and nxt not in self._failed
        ):
            blocks[nxt] = self._pool.submit(self._load, nxt)
            self._hold(nxt)
        return entry

    def _rows(self, block: np.ndarray, lo: int, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of ``block``, whose first row is ``lo`` (a view)."""
        if self._channels_first:
            return block[:, start - lo : stop - lo]
        return block[start - lo : stop - lo]

    def get(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)``: ``(stop - start, ...)``, or channels first (see above)."""
        current = self._current
        if current is not None and current[0] <= start and stop <= current[1]:
            return self._rows(current[2], current[0], start, stop)
        k, last = start // self._block, max(start, stop - 1) // self._block
        if stop - start > self._block or (
            self._failed and (k in self._failed or last in self._failed)
        ):
            return self._store._read(self._name, lambda: self._read(start, stop))
        try:
            first = self._get_block(k, k)
            second = first if last == k else self._get_block(last, k)
        except SessionError:
            # Read just this request: it fails only if it touches the corrupt chunk.
            return self._store._read(self._name, lambda: self._read(start, stop))
        lo = k * self._block
        if last == k:
            self._current = (lo, min(lo + self._block, self._n), first)
            return self._rows(first, lo, start, stop)
        head_stop = stop - last * self._block
        if self._channels_first:
            joined = np.concatenate([first[:, start - lo :], second[:, :head_stop]], axis=1)
        else:
            joined = np.concatenate([first[start - lo :], second[:head_stop]])
        joined.flags.writeable = False
        return joined

    def close(self) -> None:
        """Stop the prefetch worker and drop the blocks (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=True, cancel_futures=True)
        self._blocks.clear()
        self._preloaded.clear()
        self._current = None
        self._held = 0


def nearest_streamed(
    store: SessionReader,
    name: str,
    n: int,
    targets: np.ndarray,
    *,
    block: int,
    keep: BlockReader | None = None,
    keep_bytes: int = 0,
    threads: int = 2,
) -> np.ndarray:
    """:func:`nearest_index` of ``targets`` in stream ``name``'s timestamps, one block at a time.

    Equal to ``argmin(abs(ts - t))`` over the whole array (first index on ties): the nearest
    sample of each block is found on its own, and the blocks' answers are merged by distance,
    then index. The blocks are read on ``threads`` threads (decoding the timestamps is the
    serial start of every window iterator), at most two blocks per thread ahead of the one
    merged. With ``keep``
    (a reader of the same timestamps in blocks of ``block`` rows), the first blocks read, up
    to ``keep_bytes`` in all, are handed to it (:meth:`BlockReader.preload`) so that they are
    not decoded again: memory stays bounded by ``keep_bytes`` plus two blocks per thread,
    whatever the session's length.
    """
    best = np.zeros(targets.shape, dtype=np.intp)
    best_distance = np.full(targets.shape, np.inf)
    starts = range(0, n, block)
    # the first blocks, as long as they fit in keep_bytes in all (float64 stamps; the last
    # block may be shorter)
    kept_blocks, kept_bytes = set(), 0
    for lo in starts if keep is not None else ():
        kept_bytes += (min(n, lo + block) - lo) * 8
        if kept_bytes > keep_bytes:
            break
        kept_blocks.add(lo)

    def nearest_in(lo: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        ts = store.read_rows(name, lo, min(n, lo + block), timestamps=True, dtype=np.float64)
        local = np.atleast_1d(nearest_index(ts, targets))
        kept = ts if lo in kept_blocks else None
        return lo + local, np.abs(ts[local] - targets), kept

    def take(lo: int, found: np.ndarray, distance: np.ndarray, kept: np.ndarray | None) -> None:
        if kept is not None and keep is not None:
            keep.preload(lo // block, kept)
        # blocks are taken in order: a later block wins only when strictly nearer
        nearer = distance < best_distance
        best[nearer] = found[nearer]
        best_distance[nearer] = distance[nearer]

    if threads <= 1 or len(starts) < 2:
        for lo in starts:
            take(lo, *nearest_in(lo))
        return best
    with ThreadPoolExecutor(threads, "labsession-stamps") as pool:
        pending: deque[tuple[int, Future]] = deque()
        for lo in starts:
            pending.append((lo, pool.submit(nearest_in, lo)))
            if len(pending) >= 2 * threads:  # a few blocks ahead, no more: bounded memory
                first, future = pending.popleft()
                take(first, *future.result())
        while pending:
            first, future = pending.popleft()
            take(first, *future.result())
    return best
