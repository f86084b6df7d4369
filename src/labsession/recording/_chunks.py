"""Chunk-wise reading of a recorded stream: raw Zarr chunks, blocks and streamed lookups.

Window iterators and :class:`~labsession.sources.ReplaySource` read sessions larger than RAM
through :class:`BlockReader`, which holds a few blocks of about :data:`BLOCK_BYTES` and reads the
next one ahead on a worker thread. Chunks in the layout MyoGestic and labsession write are read
straight from the folder or the zip member (:class:`RawChunks`), skipping Zarr's per-chunk
overhead; any other layout is read through Zarr.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import zipfile
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import numcodecs
import numpy as np
import zarr
import zarr.codecs
import zarr.storage
from zarr.codecs.bytes import Endian
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

from labsession.errors import SessionError
from labsession.recording._segments import nearest_index
from labsession.recording._store import SessionStore

__all__ = [
    "BLOCK_BYTES",
    "BlockReader",
    "RawChunks",
    "chunk_reader",
    "nearest_streamed",
    "read_timestamps",
]

#: Target size of the block of samples held in memory per stream while iterating (bytes).
BLOCK_BYTES = 4 * 2**20

_FLOAT32 = np.dtype(np.float32)


class RawChunks:
    """Chunks of a Zarr v3 array read straight from the folder or the stored zip member.

    Used for the layout MyoGestic and labsession write (regular chunks spanning all channels,
    default chunk keys, bytes + zstd codecs, zip members stored uncompressed), where it skips
    Zarr's per-chunk machinery; :meth:`open` returns None for anything else, and the caller
    reads through Zarr. A chunk that was never written reads as the fill value, as in Zarr.
    """

    def __init__(self, array: zarr.Array, read_key: Callable[[str], bytes | None]):
        self._shape = tuple(array.shape)
        self._chunk = int(array.chunks[0])
        self._dtype = np.dtype(array.dtype).newbyteorder("<")
        self._fill = array.metadata.fill_value
        self._suffix = "/0" if len(self._shape) == 2 else ""
        self._read_key = read_key
        self._zstd = numcodecs.Zstd()

    @classmethod
    def open(cls, array: zarr.Array) -> RawChunks | None:
        meta = array.metadata
        codecs = getattr(meta, "codecs", ())
        if not (
            array.ndim in (1, 2)
            and array.chunks[1:] == array.shape[1:]
            and len(codecs) == 2
            and isinstance(codecs[0], zarr.codecs.BytesCodec)
            and codecs[0].endian in (None, Endian.little)
            and isinstance(codecs[1], zarr.codecs.ZstdCodec)
            and isinstance(meta.chunk_key_encoding, DefaultChunkKeyEncoding)
            and meta.chunk_key_encoding.separator == "/"
            and np.dtype(array.dtype).kind in "biuf"
        ):
            return None
        store, prefix = array.store_path.store, array.store_path.path
        prefix = f"{prefix}/" if prefix else ""
        if isinstance(store, zarr.storage.LocalStore):
            root = Path(store.root) / prefix

            def read_local(key: str) -> bytes | None:
                try:
                    return (root / key).read_bytes()
                except FileNotFoundError:
                    return None

            return cls(array, read_local)
        zf = getattr(store, "_zf", None) if isinstance(store, zarr.storage.ZipStore) else None
        if zf is None or zf.fp is None:
            return None
        members = {}
        for info in zf.infolist():
            if info.filename.startswith(prefix + "c/"):
                if info.compress_type != zipfile.ZIP_STORED:
                    return None
                members[info.filename[len(prefix) :]] = info
        fd = zf.fp.fileno()

        def read_member(key: str) -> bytes | None:
            info = members.get(key)
            if info is None:
                return None
            header = os.pread(fd, 30, info.header_offset)
            if len(header) != 30 or header[:4] != b"PK\x03\x04":
                raise SessionError(f"zip member {info.filename} has no valid local header")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            data = os.pread(fd, info.compress_size, info.header_offset + 30 + name_len + extra_len)
            if len(data) != info.compress_size:
                raise SessionError(f"zip member {info.filename} is truncated")
            return data

        return cls(array, read_member)

    def read(
        self,
        start: int,
        stop: int,
        *,
        pool: Executor | None = None,
        channels_first: bool = False,
    ) -> np.ndarray:
        """Rows ``[start, stop)`` as a new array; chunks decoded on ``pool`` when given.

        zstd decoding releases the GIL, so a pool of two threads decodes a block's chunks
        about 1.7x faster on two cores. ``channels_first`` (2-D arrays) returns the transpose,
        C-contiguous, each chunk transposed by the task that decoded it.
        """
        if channels_first:
            if len(self._shape) != 2:
                raise ValueError(f"channels_first needs a 2-D array, not {self._shape}")
            result = np.empty((self._shape[1], stop - start), dtype=self._dtype)
            out = result.T  # rows written through this view land transposed
        else:
            result = out = np.empty((stop - start, *self._shape[1:]), dtype=self._dtype)
        chunk_rows = (self._chunk, *self._shape[1:])

        def fill(index: int) -> None:
            lo = index * self._chunk
            a, b = max(start, lo), min(stop, lo + self._chunk)
            raw = self._read_key(f"c/{index}{self._suffix}")
            if raw is None:
                out[a - start : b - start] = self._fill
                return
            decoded = np.frombuffer(self._zstd.decode(raw), dtype=self._dtype)
            if decoded.size != math.prod(chunk_rows):
                raise SessionError(
                    f"chunk {index} decodes to {decoded.size} values, expected {chunk_rows}"
                )
            out[a - start : b - start] = decoded.reshape(chunk_rows)[a - lo : b - lo]

        indices = range(start // self._chunk, -(-stop // self._chunk))
        if pool is None or len(indices) < 2:
            for index in indices:
                fill(index)
        else:
            for _ in pool.map(fill, indices):  # re-raises the first error
                pass
        return result


def chunk_reader(
    array: zarr.Array, *, pool: Executor | None = None, channels_first: bool = False
) -> Callable[[int, int], np.ndarray]:
    """A ``read(start, stop)`` of ``array``'s rows: raw chunks where possible, else Zarr.

    ``pool`` decodes the raw chunks of one read in parallel; ``channels_first`` returns
    ``(n_channels, stop - start)`` C-contiguous.
    """
    raw = RawChunks.open(array)
    if raw is not None:
        return functools.partial(raw.read, pool=pool, channels_first=channels_first)
    if channels_first:
        return lambda start, stop: np.ascontiguousarray(array[start:stop].T)
    return lambda start, stop: array[start:stop]


def read_timestamps(store: SessionStore, name: str, n: int) -> np.ndarray:
    """The ``(n,)`` float64 timestamps of stream ``name`` (as ``store.get_timestamps``)."""
    read = chunk_reader(store.ts_stores[name])
    ts = store._read(name, lambda: read(0, n))
    return np.asarray(ts, dtype=np.float64)


class BlockReader:
    """Samples ``[start, stop)`` of one stream, read one block (whole chunks) at a time.

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
    """

    def __init__(
        self,
        store: SessionStore,
        name: str,
        n: int,
        *,
        dtype: np.dtype | None = _FLOAT32,
        block_bytes: int | None = None,
        prefetch: bool = False,
        array: zarr.Array | None = None,
        channels_first: bool = False,
    ):
        self._store, self._name, self._n = store, name, n
        array = store.stores[name] if array is None else array
        if channels_first and array.ndim != 2:
            raise ValueError(f"channels_first needs a 2-D stream; {name!r} has shape {array.shape}")
        self._channels_first = channels_first
        self._array = array
        # Readers that prefetch also decode each block's chunks on two threads.
        self._decode_pool = ThreadPoolExecutor(2, "labsession-decode") if prefetch else None
        self._read = chunk_reader(array, pool=self._decode_pool, channels_first=channels_first)
        self._dtype = dtype
        chunk = int(array.chunks[0])
        itemsize = max(array.dtype.itemsize, np.dtype(dtype or array.dtype).itemsize)
        row_bytes = max(1, int(np.prod(array.shape[1:], dtype=np.int64))) * itemsize
        target = BLOCK_BYTES if block_bytes is None else block_bytes
        self._block = max(chunk, target // row_bytes // chunk * chunk)
        self._blocks: dict[int, np.ndarray | Future[np.ndarray]] = {}
        self._pool = ThreadPoolExecutor(1, "labsession-prefetch") if prefetch else None

    def _load(self, k: int) -> np.ndarray:
        lo, hi = k * self._block, min((k + 1) * self._block, self._n)
        return self._finish(self._read(lo, hi))

    def _finish(self, block: np.ndarray) -> np.ndarray:
        """A block as read (already channels first if asked) -> as handed out: dtype, read-only."""
        block = block.astype(self._dtype or self._array.dtype, copy=False)
        block.flags.writeable = False
        return block

    def _get_block(self, k: int, keep_from: int) -> np.ndarray:
        """Block ``k``, prefetching ``k + 1``; drops blocks before ``keep_from`` or after ``k + 2``
        (so at most four are held: the one before for a straddling window, this one, and the
        next two being prefetched)."""
        for old in [j for j in self._blocks if j < keep_from or j > k + 2]:
            stale = self._blocks.pop(old)
            if isinstance(stale, Future):
                stale.cancel()
        entry = self._blocks.get(k)
        if entry is None:
            entry = self._store._read(self._name, lambda: self._load(k))
        elif isinstance(entry, Future):
            entry = self._store._read(self._name, entry.result)
        self._blocks[k] = entry
        if self._pool is not None and k + 1 not in self._blocks and (k + 1) * self._block < self._n:
            self._blocks[k + 1] = self._pool.submit(self._load, k + 1)
        return entry

    def get(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)``: ``(stop - start, ...)``, or channels first (see above)."""
        if stop - start > self._block:
            return self._finish(self._store._read(self._name, lambda: self._read(start, stop)))
        k, last = start // self._block, (stop - 1) // self._block
        first = self._get_block(k, k)
        lo = k * self._block
        if last == k:
            return (
                first[..., start - lo : stop - lo]
                if self._channels_first
                else first[start - lo : stop - lo]
            )
        second = self._get_block(last, k)
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


def nearest_streamed(
    store: SessionStore, name: str, n: int, targets: np.ndarray, *, block: int
) -> np.ndarray:
    """:func:`nearest_index` of ``targets`` in stream ``name``'s timestamps, one block at a time.

    Equal to ``argmin(abs(ts - t))`` over the whole array (first index on ties): each block's
    first nearest sample replaces the best so far only when strictly nearer.
    """
    read = chunk_reader(store.ts_stores[name])
    best = np.zeros(targets.shape, dtype=np.intp)
    best_distance = np.full(targets.shape, np.inf)
    for lo in range(0, n, block):
        ts = np.asarray(store._read(name, lambda lo=lo: read(lo, min(n, lo + block))), np.float64)
        local = np.atleast_1d(nearest_index(ts, targets))
        distance = np.abs(ts[local] - targets)
        nearer = distance < best_distance
        best[nearer] = lo + local[nearer]
        best_distance[nearer] = distance[nearer]
    return best
