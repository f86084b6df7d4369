"""Verified, bounded reads of a stream's rows: :class:`ArrayChunks`.

Every read of samples or timestamps goes through :class:`ArrayChunks`, which

- checks each chunk before its numbers are used, once: by the codec's own checksum where its
  ``zarr.json`` promises one (labsession writes zstd frames with a content checksum, which zstd
  verifies on decode), in a folder or a zip alike; otherwise, in a zip, against the CRC-32 of
  the archive's directory. Folder sessions written without checksums (MyoGestic's, and those of
  earlier labsession versions) cannot be verified: a flipped bit there is found only when it
  breaks the zstd frame;
- decodes a chunk into a buffer of exactly its expected size (chunk rows x channels x item
  size): a frame that claims or produces more is refused before anything is allocated, and no
  chunk over :data:`~labsession.recording._schema.MAX_CHUNK_BYTES` is read at all;
- bounds the rows of a stream by the chunk files that exist (a folder listing or the archive's
  directory), never by walking the shape ``zarr.json`` declares (:func:`valid_rows`);
- where ``zarr.json`` says ``checksum: true``, refuses a zstd frame without its content
  checksum (one re-encoded without it would otherwise come back unverified);
- refuses a timestamp chunk missing below the last one present (writers write them in order);
  refuses a missing sample chunk of an array marked as written chunk by chunk
  (:data:`EVERY_CHUNK_WRITTEN`, as labsession writes them); reads a missing sample chunk of an
  unmarked array (MyoGestic's, earlier labsession's: Zarr skips writing a chunk that is all
  fill value) as the fill value, only where the timestamp chunks of its rows are present;
- refuses an array that was closed with more rows (``labsession.closed_rows`` in its
  ``zarr.json`` attributes, written by a clean close: :data:`CLOSED_ROWS`) than its stream
  holds now: chunks lost from the end (an interrupted copy) are damage, not a shorter session.
  Arrays without the record (a crash, MyoGestic's, earlier labsession's) end where their
  timestamp chunks end, as before.

Sharded arrays (valid Zarr v3, though neither MyoGestic nor labsession writes them) are read
through Zarr one shard at a time; a shard is one chunk file, the unit of every listing and
message. In a zip each shard is checked against its CRC-32 before Zarr reads it (Zarr reads
parts of a shard, which :mod:`zipfile` does not check).

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
from labsession.recording._zstdframes import check_zstd_frames, zstd_content_size

__all__ = [
    "CLOSED_ROWS",
    "EVERY_CHUNK_WRITTEN",
    "ArrayChunks",
    "closed_rows",
    "every_chunk_written",
    "valid_rows",
    "zstd_content_size",
]

log = logging.getLogger(__name__)

#: The ``attributes`` labsession puts into the ``zarr.json`` of each sample array it writes:
#: every chunk is written, also one that is all fill value (Zarr leaves those out by default),
#: so a sample chunk missing where its timestamps exist is damage (a file lost in a copy), not
#: rows of zeros. Arrays without it (MyoGestic's, earlier labsession's) keep Zarr's reading.
EVERY_CHUNK_WRITTEN: dict[str, Any] = {"labsession": {"every_chunk_written": True}}


def every_chunk_written(meta: dict[str, Any]) -> bool:
    """Whether an array's metadata (``zarr.json`` as a dict) carries
    :data:`EVERY_CHUNK_WRITTEN`; anything else there (another tool's attributes, a damaged
    value) means no."""
    attributes = meta.get("attributes")
    ours = attributes.get("labsession") if isinstance(attributes, dict) else None
    return isinstance(ours, dict) and ours.get("every_chunk_written") is True


#: The key, under the ``labsession`` attributes of a stream's arrays, of the rows each held when
#: its session was closed cleanly (``{"labsession": {"closed_rows": 4550, ...}}``). A crash
#: leaves no such record; a writer that appends to the array later removes it (and writes it
#: again when it closes): with it, rows missing from the end are damage.
CLOSED_ROWS = "closed_rows"


def closed_rows(attributes: Any) -> int | None:
    """The rows an array held when its session was closed cleanly (:data:`CLOSED_ROWS` in its
    ``zarr.json`` attributes), or None without a record: absent, or not a whole number >= 0
    (another tool's attributes, a damaged value), which reads as before the record existed."""
    ours = attributes.get("labsession") if isinstance(attributes, dict) else None
    value = ours.get(CLOSED_ROWS) if isinstance(ours, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


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
    timestamps
        True for a stream's timestamp array: a chunk missing below the last one present is
        then an error, not rows of fill value.

    A sample array whose ``zarr.json`` carries :data:`EVERY_CHUNK_WRITTEN` has no chunk left
    out: a missing one is an error, never rows of fill value. An array whose ``zarr.json``
    records the rows it was closed with (:data:`CLOSED_ROWS`) holds at least those:
    :meth:`check_closed_end`.

    Attributes
    ----------
    chunk_rows
        Rows per chunk file: the chunk's rows, or the shard's for a sharded array.
    timestamps_of_rows
        For a sample array, the :class:`ArrayChunks` of its stream's timestamps (set by the
        owner): a missing sample chunk reads as fill value only where the timestamp chunks of
        its rows are present. None: not checked.
    """

    def __init__(
        self,
        array: zarr.Array,
        files: ChunkFiles | None,
        *,
        where: str,
        stream: str,
        timestamps: bool = False,
    ):
        self.array = array
        self.files = files
        self.where, self.stream = where, stream
        self.timestamps = timestamps
        self.timestamps_of_rows: ArrayChunks | None = None
        meta = array.metadata.to_dict()
        self.keys = ChunkKeys.from_metadata(meta)
        self.every_chunk_written = not timestamps and every_chunk_written(meta)
        self.dtype = np.dtype(array.dtype).newbyteorder("<")  # as the bytes codec stores it
        shards = getattr(array, "shards", None)
        self.sharded = shards is not None
        self._outer = tuple(int(c) for c in (shards or array.chunks))
        self.chunk_rows = self._outer[0]
        self.chunk_bytes = math.prod(self._outer) * self.dtype.itemsize
        # A shard also holds an index of 16 bytes per inner chunk (and its checksum).
        inner = math.prod(o // int(c) for o, c in zip(self._outer, array.chunks, strict=True))
        self._file_limit = compressed_bound(self.chunk_bytes) + (16 * inner + 64) * self.sharded
        self.raw = (
            files is not None
            and _raw_layout(meta, tuple(array.shape), self.dtype)
            and getattr(files, "readable", True)
        )
        self.checksum = self.raw and _zstd_checksum(meta)
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
        timestamps: bool = False,
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
        return cls(array, files, where=where, stream=stream, timestamps=timestamps)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def key(self, index: int) -> str:
        """The key of the chunk file at first-axis ``index`` (``c/3/0``; ``c/3/*`` when the
        chunks split the channels)."""
        key = self.keys.encode((index,) + (0,) * (len(self.shape) - 1))
        if self._outer[1:] != self.shape[1:]:
            key = self.keys.encode((index,)) + self.keys.separator + "*"
        return self.files.name(key) if self.files is not None else key

    def error(self, index: int, problem: str) -> SessionError:
        """A :class:`SessionError` naming chunk row ``index`` (``emg.zarr/c/3/0``)."""
        return SessionError(
            f"{self.where}: stream {self.stream!r} cannot be read: chunk {self.key(index)} "
            f"{problem}"
        )

    @property
    def closed_rows(self) -> int | None:
        """The rows this array held when its session was closed cleanly, or None without that
        record (see :func:`closed_rows`); read from the open array's metadata at each call (a
        session's own arrays get the record when it closes)."""
        return closed_rows(getattr(self.array.metadata, "attributes", None))

    @property
    def label(self) -> str:
        """The array's name in messages (``emg_timestamps.zarr``)."""
        if self.files is not None:
            return self.files.label
        return f"{self.stream}{'_timestamps' if self.timestamps else ''}.zarr"

    def closed_end(self) -> int | None:
        """The rows this array must hold, by the record of its clean close: the rows it was
        closed with, or fewer if its ``zarr.json`` declares fewer (an array cut with Zarr's
        ``resize`` reads as it says); None without the record."""
        closed = self.closed_rows
        return None if closed is None else min(closed, self.shape[0])

    def check_closed_end(self) -> None:
        """Raise if the chunk file of the last row this array was closed with is missing (chunks
        lost from its end: an interrupted copy); nothing without the record (:meth:`closed_end`).

        Raises
        ------
        SessionError
            Naming the session, the stream, the array, the rows it was closed with and the
            rows its chunk files hold, and the chunk files missing.
        """
        end = self.closed_end()
        if not end:
            return
        missing = self.missing_chunks(end - 1, end)
        if missing and not self.timestamps and not self.every_chunk_written:
            # A sample array not marked as written chunk by chunk (MyoGestic's, earlier
            # labsession's, closed since by Session.attach): Zarr left out a chunk of fill
            # value, which reads so where its timestamps are there (see _check_missing).
            ts = self.timestamps_of_rows
            if ts is None or not ts.missing_chunks(end - 1, end):
                return
        if not missing:
            return
        index = missing[-1]
        before = max((i for i in self.present_blocks() if i < index), default=-1)
        gone = (
            f"chunk {self.key(index)} is missing"
            if before + 1 == index
            else f"chunks {self.key(before + 1)} to {self.key(index)} are missing"
        )
        after = f"the last present one is {self.key(before)}" if before >= 0 else "none is left"
        held = min(end, (before + 1) * self.chunk_rows)
        raise self.closed_error(end, f"its chunk files hold {held}: {gone} ({after})")

    def closed_error(self, rows: int, found: str) -> SessionError:
        """The error of a stream holding fewer than the ``rows`` this array was closed with."""
        return SessionError(
            f"{self.where}: stream {self.stream!r}: {self.label} was closed with {rows} rows "
            f"(zarr.json attributes labsession.{CLOSED_ROWS}), but {found}: the end of the "
            f"stream was lost (an interrupted copy or sync?), so the session is damaged. "
            f"Restore the missing files from another copy; to read the rows that are left, "
            f"delete {CLOSED_ROWS} from the attributes in {self.label}/zarr.json"
        )

    def present_blocks(self) -> Sequence[int]:
        """First-axis chunk indices with a chunk file, in decreasing order (from the listing;
        every declared one for a store that cannot be listed)."""
        if self.files is None:
            return range(-(-self.shape[0] // self.chunk_rows) - 1, -1, -1)
        return self.files.present_blocks(self.keys, len(self.shape))

    def missing_chunks(self, start: int, stop: int) -> list[int]:
        """The chunk rows among those holding rows ``[start, stop)`` that have no chunk file
        (``[]``: all present, or a store that cannot be listed)."""
        if self.files is None:
            return []
        span = range(start // self.chunk_rows, -(-stop // self.chunk_rows))
        present = self.files.keys_of_rows(self.keys, len(self.shape), span)
        return [i for i in span if i not in present]

    def _check_missing(self, index: int, start: int, stop: int) -> None:
        """Rows ``[start, stop)`` of chunk ``index``, which has no file, may read as the fill
        value: raise if they may not."""
        if self.timestamps:
            last = next(iter(self.present_blocks()), -1)
            if last > index:
                raise self.error(
                    index,
                    f"is missing, but a later timestamp chunk ({self.key(last)}) exists: "
                    f"timestamp chunks are written in order, so the session is damaged",
                )
        elif self.every_chunk_written:
            raise self.error(
                index,
                "is missing, but this array's writer wrote every chunk (zarr.json attributes "
                "labsession.every_chunk_written): the file was lost (an interrupted copy?), "
                "or the array was written since by a tool that skips chunks of the fill value "
                "(Zarr's default, write_empty_chunks=False; its zeros are gone from the file); "
                "the session is damaged",
            )
        elif self.timestamps_of_rows is not None:
            absent = self.timestamps_of_rows.missing_chunks(start, stop)
            if absent:
                raise self.error(
                    index,
                    f"is missing, and so is the timestamp chunk of its rows "
                    f"({self.timestamps_of_rows.key(absent[0])}): the session is damaged",
                )

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
        C-contiguous with ``channels_first`` (2-D arrays). With ``pool``, the second half of
        the chunks is decoded on it while this thread decodes the first (zstd releases the
        GIL: two threads decode a block about 1.7x faster on two cores).

        A chunk never written reads as the fill value, as in Zarr (Zarr does not write a chunk
        that is all fill value), except where that cannot be so: a timestamp chunk missing
        below the last one present, a sample chunk of an array marked
        :data:`EVERY_CHUNK_WRITTEN`, or a sample chunk missing together with the timestamp
        chunk of its rows (when :attr:`timestamps_of_rows` is set), raises.

        Raises
        ------
        SessionError
            A chunk fails its check, does not decode to its size, is too large to read, is not
            a regular file, lacks the checksum its ``zarr.json`` promises, or is missing where
            it cannot be (above).
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
            # Zarr would block on a named pipe, and reads parts of a shard unchecked by the zip.
            present = (
                set(indices)
                if self.files is None
                else self.files.check_rows(
                    self.keys, len(shape), indices, self._file_limit, verify=self.sharded
                )
            )
            for index in indices:
                self._fill_through_zarr(out, start, stop, index, index in present)
            return result
        assert self.files is not None
        with self.files.opened() as read_file:

            def fill(index: int) -> None:
                self._fill_raw(read_file, out, start, stop, index, channels_first)

            if pool is None or len(indices) < 2:
                for index in indices:
                    fill(index)
            else:

                def fill_run(run: range) -> None:
                    for index in run:
                        fill(index)

                # The second half on the pool, the first here: one hand-off per read, not one
                # per chunk (thread wake-ups cost more than a small chunk's decode).
                half = -(-len(indices) // 2)
                second = pool.submit(fill_run, indices[half:])
                try:
                    fill_run(indices[:half])
                finally:
                    error = second.exception()  # waits: the result must not be written later
                if error is not None:
                    raise error
        return result

    def _fill_raw(
        self,
        read_file: Callable[[str, int, bool], bytes | None],
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
        # Frames with content checksums (refused below without them) are verified by zstd:
        # a zip's CRC-32 over the same bytes would add nothing but a second pass.
        raw = read_file(key, compressed_bound(self.chunk_bytes), self.checksum)
        if raw is None:
            self._check_missing(index, a, b)
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
        if self.checksum:
            try:
                check_zstd_frames(raw, checksum=True)
            except ValueError as exc:
                raise self.error(
                    index, f"cannot be verified: {exc}; the file was changed or is corrupt"
                ) from None
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

    def _fill_through_zarr(
        self, out: np.ndarray, start: int, stop: int, index: int, present: bool
    ) -> None:
        lo = index * self.chunk_rows
        a, b = max(start, lo), min(stop, lo + self.chunk_rows)
        if not present:
            self._check_missing(index, a, b)
        try:
            out[a - start : b - start] = self.array[a:b]
        except Exception as exc:
            raise self.error(index, f"cannot be read through Zarr ({brief(exc)})") from exc


def _zstd_checksum(meta: dict[str, Any]) -> bool:
    """True if the array's zstd codec writes content checksums (``checksum: true``)."""
    codecs = meta.get("codecs") or []
    config = (codecs[-1].get("configuration") or {}) if codecs else {}
    return config.get("checksum") is True


def valid_rows(data: ArrayChunks, ts: ArrayChunks) -> int:
    """Leading rows of a stream present in both arrays with a finite timestamp.

    ``min(declared lengths)``, cut to the last finite timestamp of the last timestamp chunk
    that exists: a session closed normally gives its full length; a crash between growing the
    arrays and writing their chunks leaves allocated rows whose timestamps read as NaN (or
    whose chunks were never written), which are cut off. Only chunk files that exist are read,
    from the last back (normally one): a ``zarr.json`` declaring 10^12 rows over a few chunks
    costs nothing.

    Raises
    ------
    SessionError
        If either array records the rows it was closed with (:data:`CLOSED_ROWS`) and its
        chunk file of the last of them is missing, or fewer rows than that have a finite
        timestamp: chunks lost from its end (:meth:`ArrayChunks.check_closed_end`).
    """
    n = _finite_rows(data, ts)
    closed = [(array, array.closed_end()) for array in (ts, data)]
    closed = [(array, end) for array, end in closed if end is not None]
    if closed:
        for array, _ in closed:
            array.check_closed_end()
        array, end = min(closed, key=lambda pair: pair[1])
        expected = min(end, data.shape[0], ts.shape[0])
        if n < expected:  # the chunks are there, their last stamps are not (NaN written)
            raise array.closed_error(
                expected, f"only {n} rows of the stream have a finite timestamp"
            )
    return n


def _finite_rows(data: ArrayChunks, ts: ArrayChunks) -> int:
    """:func:`valid_rows` without the check of the closed record."""
    n = min(data.shape[0], ts.shape[0])
    rows = ts.chunk_rows  # a shard's rows for a sharded array: the listing lists shards
    for index in ts.present_blocks():
        lo = index * rows
        if lo >= n:
            continue
        hi = min(n, lo + rows)
        finite = np.flatnonzero(np.isfinite(ts.read(lo, hi)))
        if finite.size:
            return lo + int(finite[-1]) + 1
    return 0
