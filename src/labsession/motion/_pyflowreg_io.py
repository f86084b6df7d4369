"""pyflowreg's video I/O factories, ``get_video_file_reader`` and ``get_video_file_writer``.

Code written for ``pyflowreg.util.io.factory`` runs with the import changed: the reader is
:func:`~labsession.motion.open_video` seen through pyflowreg's reader API (``reader[i]``,
``read_batch()`` / ``has_batch()`` / ``reset()`` over buffers of ``buffer_size`` frames,
temporal binning by ``bin_size``), and the writer takes batches of unknown number
(``write_frames``) and writes the real file through :class:`~labsession.motion.VideoWriter`
at ``close()``, so the file appears whole under its name or not at all. Formats are those of
the format registry (:func:`~labsession.motion.register_video_format`).
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import struct
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from labsession.core.atomic import create_temp_file
from labsession.errors import ConfigError
from labsession.motion._formats import available_video_formats, video_format
from labsession.motion._readers import VideoReader, open_video
from labsession.motion._writers import VideoWriter

__all__ = [
    "BatchVideoReader",
    "SpooledVideoWriter",
    "get_video_file_reader",
    "get_video_file_writer",
]

logger = logging.getLogger(__name__)

_READER_KWARGS = ("dataset_names", "channel_idx")
_WRITER_KWARGS = ("dataset_names",)
#: Bytes of the spool's ``.npy`` header: fixed, so it is rewritten in place after each batch.
_HEADER_BYTES = 256
#: Bytes of frames handed to :class:`VideoWriter` at once when the spool is written out.
_COPY_BYTES = 64 * 2**20


def _positive_int(name: str, value: object) -> int:
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer (frames)")
    return number


def _refuse_unknown(where: str, kwargs: Mapping[str, object], known: tuple[str, ...]) -> None:
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: keyword argument(s) {', '.join(unknown)} not taken here; "
            f"labsession takes {', '.join(known)} (see docs/migrating.md)"
        )


def _one_dataset(where: str, names: object) -> str | None:
    """pyflowreg's ``dataset_names`` (a name or a list) as our one dataset name."""
    if names is None or names == "" or names == []:
        return None
    if isinstance(names, str):
        name = names
    elif isinstance(names, (list, tuple)) and len(names) == 1 and isinstance(names[0], str):
        name = names[0]
    else:
        raise ConfigError(
            f"{where}: dataset_names={names!r} not taken; labsession reads and writes one "
            "(T, H, W[, C]) dataset: give one name (a ch1..chN group is found when reading "
            "without a name)"
        )
    if "*" in name:
        raise ConfigError(
            f"{where}: dataset_names={name!r}: patterns with '*' (one dataset per channel) are "
            "not written; labsession writes one (T, H, W, C) dataset: give its name"
        )
    return name.lstrip("/") or None


class BatchVideoReader:
    """A video read in pyflowreg's reader API: indexing, batches and temporal binning.

    Frames are float32 ``(T, H, W, C)``. With ``bin_size`` ``b > 1``, frame ``i`` is the mean of
    raw frames ``i*b .. (i+1)*b - 1``, and the shape is ``(ceil(T / b), H, W, C)``; the last bin
    may hold fewer frames: indexing averages the frames it holds, :meth:`read_batch` pads it
    with its last frame first (both as pyflowreg).

    Parameters
    ----------
    reader
        The labsession reader of the video.
    buffer_size
        Binned frames per :meth:`read_batch`.
    bin_size
        Raw frames averaged into one.
    """

    def __init__(self, reader: VideoReader, buffer_size: int = 500, bin_size: int = 1) -> None:
        self._reader = reader
        self.buffer_size = _positive_int("buffer_size", buffer_size)
        self.bin_size = _positive_int("bin_size", bin_size)
        self.frame_count, self.height, self.width, self.n_channels = reader.shape
        self.dtype = np.dtype(np.float32)
        self.current_frame = 0

    def __len__(self) -> int:
        """Frames after binning, ``ceil(T / bin_size)``."""
        return -(-self.frame_count // self.bin_size)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(T_binned, H, W, C)``."""
        return (len(self), self.height, self.width, self.n_channels)

    @property
    def unbinned_shape(self) -> tuple[int, int, int, int]:
        """``(T, H, W, C)`` of the raw frames."""
        return (self.frame_count, self.height, self.width, self.n_channels)

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.height, self.width, self.n_channels), dtype=np.float32)

    def _bins(self, first: int, last: int, *, pad: bool = False) -> np.ndarray:
        """Binned frames ``first .. last - 1`` ``(n, H, W, C)``; ``pad``: a short last bin is
        filled with its last frame (pyflowreg's batches), else averaged as it is."""
        b = self.bin_size
        raw = self._reader[first * b : min(last * b, self.frame_count)]
        if b == 1:
            return raw
        n_full, rest = divmod(len(raw), b)
        parts = [raw[: n_full * b].reshape(n_full, b, *raw.shape[1:]).mean(1, dtype=np.float64)]
        if rest:
            tail = raw[n_full * b :].sum(0, dtype=np.float64)
            if pad:
                tail += (b - rest) * raw[-1].astype(np.float64)
            parts.append((tail / (b if pad else rest))[None])
        return np.concatenate(parts).astype(np.float32)

    def _checked(self, index: int) -> int:
        n = len(self)
        k = index + n if index < 0 else index
        if not 0 <= k < n:
            raise IndexError(f"{self._reader.name}: index {index} out of range for {n} frames")
        return k

    def _frames(self, indices: list[int]) -> np.ndarray:
        if not indices:
            return self._empty()
        if self.bin_size == 1:
            return self._reader.read_frames(indices)
        return np.concatenate([self._bins(k, k + 1) for k in indices])

    def __getitem__(self, key: Any) -> np.ndarray:
        """``reader[i]``: one frame ``(H, W, C)``; a slice, list or array of indices: frames
        ``(n, H, W, C)``; a tuple: those frames, then indexed by the rest (as pyflowreg)."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            k = self._checked(int(key))
            return self._bins(k, k + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._bins(start, stop) if start < stop else self._empty()
            return self._frames(list(range(start, stop, step)))
        if isinstance(key, (list, np.ndarray)):
            return self._frames([self._checked(int(k)) for k in np.asarray(key).ravel()])
        if isinstance(key, tuple) and key:
            frame_key, *rest = key
            frames = self[frame_key]
            if frames.ndim == 3:
                frames = frames[None]
            return frames[(slice(None), *rest)] if rest else frames
        raise TypeError(f"index frames with an int, a slice or a list, not {type(key).__name__}")

    def has_batch(self) -> bool:
        """Whether :meth:`read_batch` has frames left."""
        return self.current_frame < self.frame_count

    def read_batch(self) -> np.ndarray | None:
        """The next ``buffer_size`` binned frames ``(n, H, W, C)``, or ``None`` at the end."""
        if not self.has_batch():
            return None
        first = self.current_frame // self.bin_size
        batch = self._bins(first, first + self.buffer_size, pad=True)
        step = self.buffer_size * self.bin_size
        self.current_frame = min(self.current_frame + step, self.frame_count)
        return batch

    def reset(self) -> None:
        """Start :meth:`read_batch` again from the first frame."""
        self.current_frame = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        self.reset()
        while self.has_batch():
            yield self.read_batch()  # type: ignore[misc]

    def close(self) -> None:
        """Close the file."""
        self._reader.close()

    def __enter__(self) -> BatchVideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"BatchVideoReader({self._reader.name!r}, shape={self.shape}, "
            f"buffer_size={self.buffer_size}, bin_size={self.bin_size})"
        )


def get_video_file_reader(
    input_source: str | os.PathLike[str] | np.ndarray | VideoReader | BatchVideoReader,
    buffer_size: int = 500,
    bin_size: int = 1,
    **kwargs: Any,
) -> BatchVideoReader:
    """Open a video with pyflowreg's reader API (``pyflowreg.util.io.factory``'s name).

    Parameters
    ----------
    input_source
        A path of any format :func:`~labsession.motion.open_video` reads (picked by suffix), an
        array ``(T, H, W[, C])`` or one frame ``(H, W)`` (a 3-D array is always ``(T, H, W)``),
        a labsession :class:`~labsession.motion.VideoReader`, or a reader this function made
        (returned as it is).
    buffer_size
        Binned frames per ``read_batch()``.
    bin_size
        Raw frames averaged into one (temporal binning).
    **kwargs
        ``dataset_names`` (one name, or a list of one: the HDF5/MAT dataset or NPZ key) and
        ``channel_idx`` (0-based channels to keep).

    Returns
    -------
    BatchVideoReader
        Float32 frames ``(T_binned, H, W, C)``; close it, or use ``with``.

    Raises
    ------
    ConfigError
        Another keyword argument (named), several ``dataset_names``, a list of per-channel
        files, or ``buffer_size`` / ``bin_size`` not a positive integer.
    FileNotFoundError, ValueError
        As :func:`~labsession.motion.open_video`.
    """
    _refuse_unknown("get_video_file_reader", kwargs, _READER_KWARGS)
    _positive_int("buffer_size", buffer_size)
    _positive_int("bin_size", bin_size)
    if isinstance(input_source, BatchVideoReader):
        return input_source
    if isinstance(input_source, VideoReader):
        return BatchVideoReader(input_source, buffer_size, bin_size)
    if isinstance(input_source, (list, tuple)):
        raise ConfigError(
            f"get_video_file_reader: a list of per-channel files {list(input_source)!r} is not "
            "read; save the channels as one (T, H, W, C) file, or give one file"
        )
    dataset = _one_dataset("get_video_file_reader", kwargs.get("dataset_names"))
    channels = kwargs.get("channel_idx")
    if isinstance(input_source, np.ndarray) and input_source.ndim == 2:
        input_source = input_source[None]  # one (H, W) frame, as pyflowreg
    reader = open_video(input_source, dataset_name=dataset, channel_idx=channels)
    return BatchVideoReader(reader, buffer_size, bin_size)


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A ``.npy`` (version 1.0) header of exactly ``_HEADER_BYTES`` bytes."""
    text = f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': {shape}, }}"
    body = _HEADER_BYTES - 10
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body) + text.ljust(body - 1).encode() + b"\n"


def _drop_spool(file: IO[bytes], spool: Path, target: Path | None) -> None:
    file.close()
    spool.unlink(missing_ok=True)
    if target is not None:
        logger.warning("%s: writer dropped without close(); the file was not written", target)


class SpooledVideoWriter:
    """pyflowreg's writer API over :class:`~labsession.motion.VideoWriter`.

    Batches go to a ``.npy`` spool beside the target (``.<name>.<hex>.npy``, float32, a valid
    ``.npy`` of the frames so far after every batch); :meth:`close` writes the real file from it
    through :class:`VideoWriter` (atomic: the target appears whole or not at all) and removes
    the spool. Memory stays bounded by one batch. Frames are stored as float32.

    Parameters
    ----------
    file_path
        Target file (folder for Zarr); its folder must exist.
    output_format
        A registered format that can be written.
    dataset
        Dataset or key name (HDF5, MAT, NPZ).
    """

    def __init__(self, file_path: Path, output_format: str, dataset: str = "mov") -> None:
        self.file_path = file_path
        self.output_format = output_format
        self.dataset = dataset
        self.dtype = np.dtype(np.float32)
        self.height = self.width = self.n_channels = self.frame_count = 0
        self.initialized = False
        self._closed = False
        self._spool: Path | None = None
        self._file: IO[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    def _as_4d(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim == 2:  # one (H, W) frame
            return frames[None, :, :, None]
        if frames.ndim == 3:  # one (H, W, C) frame once the size is known, else (T, H, W)
            if self.initialized and frames.shape[:2] == (self.height, self.width):
                return frames[None]
            return frames[..., None]
        if frames.ndim == 4:
            return frames
        raise ValueError(
            f"{self.file_path}: frames must be (T, H, W, C), (T, H, W), (H, W, C) or (H, W), "
            f"got shape {frames.shape}"
        )

    def _open_spool(self) -> None:
        spool = create_temp_file(
            self.file_path.parent, prefix=f".{self.file_path.name}.", suffix=".npy"
        )
        file = open(spool, "r+b")  # noqa: SIM115 - closed by close(), abort() or the finalizer
        self._spool, self._file = spool, file
        self._finalizer = weakref.finalize(self, _drop_spool, file, spool, self.file_path)
        file.write(_npy_header((0, self.height, self.width, self.n_channels), self.dtype))

    def write_frames(self, frames: np.ndarray) -> None:
        """Append ``frames``: ``(T, H, W, C)``, ``(T, H, W)``, ``(H, W, C)`` or ``(H, W)``.

        A 3-D batch is one ``(H, W, C)`` frame when its first two axes are the frame size
        already written, else ``(T, H, W)`` (as pyflowreg).

        Raises
        ------
        ValueError
            Another number of dimensions, a frame size or channel count other than the first
            batch's, or a closed writer.
        """
        if self._closed:
            raise ValueError(f"{self.file_path}: the writer is already closed")
        block = self._as_4d(np.asarray(frames))
        if not self.initialized:
            _, self.height, self.width, self.n_channels = block.shape
            self.initialized = True
        if block.shape[1:] != (self.height, self.width, self.n_channels):
            raise ValueError(
                f"{self.file_path}: frames of shape {block.shape[1:]} (H, W, C) after frames of "
                f"{(self.height, self.width, self.n_channels)}"
            )
        if self._file is None:
            self._open_spool()
        file = self._file
        assert file is not None
        data = np.ascontiguousarray(block, dtype=self.dtype)
        file.seek(0, os.SEEK_END)
        file.write(memoryview(data).cast("B"))
        self.frame_count += len(data)
        file.seek(0)
        file.write(_npy_header(self._shape(), self.dtype))
        file.flush()  # the spool on disk is a valid .npy of every frame written

    def _shape(self) -> tuple[int, int, int, int]:
        return (self.frame_count, self.height, self.width, self.n_channels)

    def close(self) -> Path | None:
        """Write the file at ``file_path`` (atomically) and remove the spool.

        Returns
        -------
        Path or None
            ``file_path``; ``None`` when no frame was written (no file is made).
        """
        if self._closed:
            return self.file_path if self.frame_count else None
        self._closed = True
        if self._finalizer is None:
            logger.warning("%s: no frames were written; the file was not created", self.file_path)
            return None
        self._finalizer.detach()
        file, spool = self._file, self._spool
        assert file is not None
        assert spool is not None
        try:
            file.close()
            video = np.load(spool, mmap_mode="r")
            step = max(1, _COPY_BYTES // max(1, video[0].nbytes))
            with VideoWriter(
                self.file_path, self.output_format, shape=self._shape(), dataset=self.dataset
            ) as writer:
                for start in range(0, self.frame_count, step):
                    writer.write(video[start : start + step])
            del video
        finally:
            _drop_spool(file, spool, None)
        return self.file_path

    def abort(self) -> None:
        """Drop the frames written; ``file_path`` is left as it was."""
        self._closed = True
        if self._finalizer is not None:
            self._finalizer.detach()
            with contextlib.suppress(OSError):
                _drop_spool(self._file, self._spool, None)  # type: ignore[arg-type]

    def __enter__(self) -> SpooledVideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        return (
            f"SpooledVideoWriter({str(self.file_path)!r}, {self.output_format!r}, "
            f"frames={self.frame_count})"
        )


def get_video_file_writer(
    file_path: str | os.PathLike[str], output_format: str, **kwargs: Any
) -> SpooledVideoWriter:
    """A writer with pyflowreg's writer API (``pyflowreg.util.io.factory``'s name).

    Parameters
    ----------
    file_path
        Target file (folder for Zarr); its folder must exist. An earlier file there stays until
        ``close()`` replaces it.
    output_format
        A registered format that can be written (case-insensitive): ``"HDF5"``, ``"TIFF"``,
        ``"MAT"``, ``"NPZ"``, ``"ZARR"`` or one added with
        :func:`~labsession.motion.register_video_format`.
    **kwargs
        ``dataset_names``: the dataset or key name (one name, default ``"mov"``).

    Returns
    -------
    SpooledVideoWriter
        ``write_frames(frames)`` for each batch, then ``close()`` (or a ``with`` block; an
        exception inside it writes nothing).

    Raises
    ------
    ConfigError
        An unknown or read-only format (the message lists those written), another keyword
        argument (named), or a ``dataset_names`` pattern or list of several.
    FileNotFoundError
        If the target's folder does not exist.
    """
    _refuse_unknown("get_video_file_writer", kwargs, _WRITER_KWARGS)
    fmt = video_format(str(output_format))
    if fmt.sink is None:
        raise ConfigError(
            f"output format {fmt.name!r} is read only; use one of {available_video_formats()}"
        )
    dataset = _one_dataset("get_video_file_writer", kwargs.get("dataset_names")) or "mov"
    path = Path(file_path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: folder {path.parent} does not exist")
    return SpooledVideoWriter(path, fmt.name, dataset)
