"""Verified, bounded reads of a stream's rows: :class:`ArrayChunks`.

Every read of samples or timestamps goes through :class:`ArrayChunks`, which

- checks each chunk before its numbers are used: a zip member against the CRC-32 of the
  archive's directory; a chunk file of a folder by the codec's own checksum (labsession writes
  zstd frames with a content checksum, which zstd verifies on decode). Folder sessions written
  without checksums (MyoGestic's, and those of earlier labsession versions) cannot be verified:
  a flipped bit there is found only when it breaks the zstd frame;
- decodes a chunk into a buffer of exactly its expected size (chunk rows x channels x item
  size): a frame that claims or produces more is refused before anything is allocated, and no
  chunk over :data:`~labsession.recording._schema.MAX_CHUNK_BYTES` is read at all;
- bounds the rows of a stream by the chunk files that exist (a folder listing or the archive's
  directory), never by walking the shape ``zarr.json`` declares (:func:`valid_rows`).

Chunks in the layout MyoGestic and labsession write (regular chunks spanning all channels,
default ``c/`` keys, bytes + zstd codecs) are decoded here, skipping Zarr's per-chunk
machinery; any other layout is read through Zarr, one chunk row at a time (Zarr's zip store
reads whole members, which :mod:`zipfile` checks against their CRC). A failed check is a
:class:`~labsession.errors.SessionError` naming the session, the stream and the chunk key.

Window iterators and :class:`~labsession.sources.ReplaySource` read through
:class:`~labsession.recording._blocks.BlockReader`, built on these reads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.storage
from numcodecs import zstd

from labsession.errors import SessionError
from labsession.recording._chunkfiles import (
    ChunkFiles,
    ChunkKeys,
    FolderChunkFiles,
    ZipIndex,
    compressed_bound,
)
from labsession.recording._schema import MAX_CHUNK_BYTES, brief

__all__ = ["ArrayChunks", "valid_rows", "zstd_content_size"]

log = logging.getLogger(__name__)

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def zstd_content_size(frame: bytes) -> int | None:
    """The decompressed size a zstd frame's header declares, or None if it declares none.

    Raises ``ValueError`` for a header too short to hold the fields its flags announce.
    """
    if len(frame) < 5 or frame[:4] != _ZSTD_MAGIC:
        return None
    descriptor = frame[4]
    fcs_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    position = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    size = (single_segment, 2, 4, 8)[fcs_flag]
    if size == 0:
        return None
    if len(frame) < position + size:
        raise ValueError("the zstd frame header is truncated")
    value = int.from_bytes(frame[position : position + size], "little")
    return value + 256 if size == 2 else value


def _raw_layout(meta: dict[str, Any], shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """True for the layout :class:`ArrayChunks` decodes itself (see the module docstring)."""
    grid = meta.get("chunk_grid") or {}
    codecs = list(meta.get("codecs") or [])
    encoding = meta.get("chunk_key_encoding") or {}
    chunk_shape = tuple((grid.get("configuration") or {}).get("chunk_shape") or ())
    if not (
        meta.get("zarr_format") == 3
        and len(shape) in (1, 2)
        and grid.get("name") == "regular"
        and len(chunk_shape) == len(shape)
        and chunk_shape[1:] == shape[1:]
        and encoding.get("name") == "default"
        and (encoding.get("configuration") or {}).get("separator", "/") == "/"
        and not meta.get("storage_transformers")
        and dtype.kind in "biuf"
        and len(codecs) == 2
    ):
        return False
    serializer, compressor = codecs
    endian = (serializer.get("configuration") or {}).get("endian")
    return (
        serializer.get("name") == "bytes"
        and (endian == "little" or (endian is None and dtype.itemsize == 1))
        and compressor.get("name") == "zstd"
    )


class ArrayChunks:
    """Verified reads of the rows of one Zarr array (a stream's samples or timestamps).

    Build it with :meth:`open`. The array's shape is read from the ``zarr.Array`` at each call,
    so the arrays of a session being recorded are read as they grow. Thread-safe.

    Parameters
    ----------
    array
        The open array (its store a folder or a ``.session.zip``).
    files
        Its chunk files (listing and checked reads); None for a store that is neither.
    where, stream
        Session path and stream name, for messages.
    """

    def __init__(self, array: zarr.Array, files: ChunkFiles | None, *, where: str, stream: str):
        self.array = array
        self.files = files
        self.where, self.stream = where, stream
        meta = array.metadata.to_dict()
        self.keys = ChunkKeys.from_metadata(meta)
        self.dtype = np.dtype(array.dtype).newbyteorder("<")  # as the bytes codec stores it
        self.chunk_rows = int(array.chunks[0])
        outer = getattr(array, "shards", None) or array.chunks
        self.chunk_bytes = math.prod(int(c) for c in outer) * self.dtype.itemsize
        self.raw = (
            files is not None
            and _raw_layout(meta, tuple(array.shape), self.dtype)
            and getattr(files, "readable", True)
        )
        fill = array.fill_value
        self.fill = fill if fill is not None else 0
        if files is not None:
            files.where, files.stream = where, stream

    @classmethod
    def open(
        cls,
        array: zarr.Array,
        *,
        where: str,
        stream: str,
        zip_indexes: dict[Path, ZipIndex] | None = None,
    ) -> ArrayChunks:
        """The verified reader of ``array``; ``zip_indexes`` caches archive directories by path."""
        store, path = array.store_path.store, array.store_path.path
        files: ChunkFiles | None = None
        if isinstance(store, zarr.storage.LocalStore):
            root = Path(store.root) / path
            files = FolderChunkFiles(root, path or root.name)
        elif isinstance(store, zarr.storage.ZipStore):
            archive = Path(store.path)
            cache = {} if zip_indexes is None else zip_indexes
            index = cache.get(archive)
            if index is None:
                index = cache[archive] = ZipIndex(archive)
            files = index.chunk_files(path)
        return cls(array, files, where=where, stream=stream)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def error(self, index: int, problem: str) -> SessionError:
        """A :class:`SessionError` naming chunk row ``index`` (``emg.zarr/c/3/0``; ``c/3/*``
        when the chunks of an array read through Zarr split the channels)."""
        key = self.keys.encode((index,) + (0,) * (len(self.shape) - 1))
        if tuple(self.array.chunks[1:]) != self.shape[1:]:
            key = self.keys.encode((index,)) + self.keys.separator + "*"
        label = self.files.name(key) if self.files is not None else key
        return SessionError(
            f"{self.where}: stream {self.stream!r} cannot be read: chunk {label} {problem}"
        )

    def present_blocks(self) -> Sequence[int]:
        """First-axis chunk indices with a chunk file, in decreasing order (from the listing;
        every declared one for a store that cannot be listed)."""
        if self.files is None:
            return range(-(-self.shape[0] // self.chunk_rows) - 1, -1, -1)
        return self.files.present_blocks(self.keys, len(self.shape))

    def _check_chunk_size(self) -> None:
        if self.chunk_bytes > MAX_CHUNK_BYTES:
            label = self.files.label if self.files is not None else "array"
            raise SessionError(
                f"{self.where}: stream {self.stream!r}: {label} has chunks of "
                f"{self.chunk_bytes} bytes, more than the {MAX_CHUNK_BYTES} bytes labsession "
                f"decodes per chunk; refused before reading"
            )

    def read(
        self,
        start: int,
        stop: int,
        *,
        pool: Executor | None = None,
        channels_first: bool = False,
    ) -> np.ndarray:
        """Rows ``[start, stop)`` as a new array (the caller checked the range).

        ``(stop - start, ...)`` in the array's dtype, or ``(n_channels, stop - start)``
        C-contiguous with ``channels_first`` (2-D arrays). Chunks are decoded on ``pool`` when
        given (zstd releases the GIL: two threads decode a block about 1.7x faster on two
        cores). A chunk never written reads as the fill value, as in Zarr.

        Raises
        ------
        SessionError
            A chunk fails its check, does not decode to its size, or is too large to read.
        """
        shape = self.shape
        if channels_first and len(shape) != 2:
            raise ValueError(f"channels_first needs a 2-D array, not {shape}")
        self._check_chunk_size()
        if channels_first:
            result = np.empty((shape[1], stop - start), dtype=self.dtype)
            out = result.T  # rows written through this view land transposed
        else:
            result = out = np.empty((stop - start, *shape[1:]), dtype=self.dtype)
        indices = range(start // self.chunk_rows, -(-stop // self.chunk_rows))
        if not self.raw:
            for index in indices:
                self._fill_through_zarr(out, start, stop, index)
            return result
        assert self.files is not None
        with self.files.opened() as read_file:

            def fill(index: int) -> None:
                self._fill_raw(read_file, out, start, stop, index, channels_first)

            if pool is None or len(indices) < 2:
                for index in indices:
                    fill(index)
            else:
                for _ in pool.map(fill, indices):  # re-raises the first error
                    pass
        return result

    def _fill_raw(
        self,
        read_file: Callable[[str, int], bytes | None],
        out: np.ndarray,
        start: int,
        stop: int,
        index: int,
        channels_first: bool,
    ) -> None:
        rows = self.chunk_rows
        lo = index * rows
        a, b = max(start, lo), min(stop, lo + rows)
        key = self.keys.encode((index,) + (0,) * (out.ndim - 1))
        raw = read_file(key, compressed_bound(self.chunk_bytes))
        if raw is None:
            out[a - start : b - start] = self.fill
            return
        whole = a == lo and b == lo + rows and not channels_first
        # A whole chunk of a sample-major read decodes straight into the result.
        target = out[a - start : b - start] if whole else None
        if target is None:
            target = np.empty((rows, *out.shape[1:]), dtype=self.dtype)
        try:
            claimed = zstd_content_size(raw)
        except ValueError as exc:
            raise self.error(index, f"is truncated or corrupt ({exc})") from None
        if claimed is not None and claimed != self.chunk_bytes:
            raise self.error(
                index,
                f"claims to decode to {claimed} bytes, but a chunk of {self.dtype} with shape "
                f"{target.shape} is {self.chunk_bytes} bytes: the file is corrupt",
            )
        try:
            # Into a buffer of the chunk's size: zstd stops at its end, whatever the frame says.
            zstd.decompress(raw, target)
        except (RuntimeError, ValueError) as exc:
            problem = (
                "fails its zstd checksum (the file is corrupt)"
                if "checksum" in str(exc)
                else f"does not decode to its {self.chunk_bytes} bytes ({exc}): the file is "
                f"truncated or corrupt"
            )
            raise self.error(index, problem) from None
        if not whole:
            out[a - start : b - start] = target[a - lo : b - lo]

    def _fill_through_zarr(self, out: np.ndarray, start: int, stop: int, index: int) -> None:
        lo = index * self.chunk_rows
        a, b = max(start, lo), min(stop, lo + self.chunk_rows)
        try:
            out[a - start : b - start] = self.array[a:b]
        except Exception as exc:
            raise self.error(index, f"cannot be read through Zarr ({brief(exc)})") from exc


def valid_rows(data: ArrayChunks, ts: ArrayChunks) -> int:
    """Leading rows of a stream present in both arrays with a finite timestamp.

    ``min(declared lengths)``, cut to the last finite timestamp of the last timestamp chunk
    that exists: a session closed normally gives its full length; a crash between growing the
    arrays and writing their chunks leaves allocated rows whose timestamps read as NaN (or
    whose chunks were never written), which are cut off. Only chunk files that exist are read,
    from the last back (normally one): a ``zarr.json`` declaring 10^12 rows over a few chunks
    costs nothing.
    """
    n = min(data.shape[0], ts.shape[0])
    rows = ts.chunk_rows
    for index in ts.present_blocks():
        lo = index * rows
        if lo >= n:
            continue
        hi = min(n, lo + rows)
        finite = np.flatnonzero(np.isfinite(ts.read(lo, hi)))
        if finite.size:
            return lo + int(finite[-1]) + 1
    return 0
