"""Video sinks: one class per output format behind :class:`VideoSink` (write, commit, abort).

A sink is built from a :class:`SinkSpec` (target path, final shape ``(T, H, W, C)``, dtype,
dataset name, metadata) and writes into a temporary sibling of the target; :meth:`~VideoSink.
commit` publishes it in one rename (``core.atomic``), :meth:`~VideoSink.abort` removes it and
leaves any earlier file untouched. :class:`~labsession.motion.VideoWriter` checks the frames
(shape, count, dtype) before a sink sees them, so a sink only stores what it is given.

Built in: :class:`HDF5Sink`, :class:`MatSink` (MAT v7.3), :class:`TiffSink` (ImageJ
hyperstack), :class:`NpzSink`, :class:`ZarrSink`. Add a format with
:func:`~labsession.motion.register_video_format`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from labsession.core.atomic import (
    StagedFile,
    atomic_path,
    create_temp_dir,
    create_temp_file,
    flush_trees,
    replace_dir,
)

__all__ = [
    "HDF5Sink",
    "MatSink",
    "NpzSink",
    "SinkSpec",
    "TiffSink",
    "VideoSink",
    "ZarrSink",
    "write_mat_header",
]


@dataclasses.dataclass(frozen=True)
class SinkSpec:
    """What a sink writes.

    Attributes
    ----------
    path
        Target file (or folder); its parent folder exists.
    shape
        Final ``(T, H, W, C)``: every frame is written exactly once, in order.
    dtype
        Data type of the stored frames (``float32`` for videos, ``uint8`` for masks).
    dataset
        Dataset or key name (HDF5, MAT, NPZ; a format without names may ignore it).
    metadata
        JSON text to store beside the data (the options used).
    """

    path: Path
    shape: tuple[int, int, int, int]
    dtype: np.dtype
    dataset: str = "mov"
    metadata: str = "{}"


@runtime_checkable
class VideoSink(Protocol):
    """Writes one video to a temporary sibling of ``spec.path`` and publishes it atomically.

    Built as ``sink_class(spec)``; then :meth:`write` is called with consecutive blocks of
    frames, and one of :meth:`commit` (all ``T`` frames written) or :meth:`abort`. A constructor
    that raises removes what it created.
    """

    def write(self, frames: np.ndarray, start: int) -> None:
        """Store ``frames`` ``(n, H, W, C)`` of ``spec.dtype`` as frames ``start .. start + n``."""
        ...

    def commit(self) -> None:
        """Finish the file and move it to ``spec.path`` in one rename (replacing what is there)."""
        ...

    def abort(self) -> None:
        """Remove the temporary file; ``spec.path`` is left as it was. Must not raise."""
        ...


def write_mat_header(path: Path) -> None:
    """Write the 128-byte MATLAB v7.3 header into an HDF5 file's 512-byte user block."""
    text = (
        "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
        + time.strftime("%a %b %d %H:%M:%S %Y")
        + " HDF5 schema 1.00 ."
    ).encode("ascii")
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header)


class HDF5Sink:
    """HDF5: dataset ``spec.dataset`` ``(T, H, W, C)``, one frame per gzip-1 chunk, attribute
    ``options`` holding the metadata."""

    def __init__(self, spec: SinkSpec) -> None:
        import h5py

        self._staged = StagedFile(spec.path)
        try:
            self._h5 = h5py.File(self._staged.tmp, "w")
            self._array = self._h5.create_dataset(
                spec.dataset,
                shape=spec.shape,
                dtype=spec.dtype,
                chunks=(1, *spec.shape[1:]),
                compression="gzip",
                compression_opts=1,
            )
            self._array.attrs["options"] = spec.metadata
        except BaseException:
            self.abort()
            raise

    def write(self, frames: np.ndarray, start: int) -> None:
        self._array[start : start + len(frames)] = frames

    def commit(self) -> None:
        self._h5.close()
        self._staged.commit()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._h5.close()
        self._staged.abort()


class MatSink:
    """MAT v7.3 (HDF5 with MATLAB's header): MATLAB reads ``(H, W, C, T)`` ``single``; the
    metadata is a ``char`` variable ``options``."""

    def __init__(self, spec: SinkSpec) -> None:
        import h5py

        self._staged = StagedFile(spec.path)
        try:
            self._h5 = h5py.File(self._staged.tmp, "w", userblock_size=512)
            self._create(spec)
        except BaseException:
            self.abort()
            raise

    def _create(self, spec: SinkSpec) -> None:
        # MATLAB reads HDF5 axes reversed: store (T, C, W, H) for (H, W, C, T)
        t, h, w, c = spec.shape
        self._array = self._h5.create_dataset(
            spec.dataset, shape=(t, c, w, h), dtype=spec.dtype, chunks=(1, c, w, h)
        )
        self._array.attrs["MATLAB_class"] = np.bytes_(
            "single" if spec.dtype == np.float32 else "double"
        )
        meta = np.frombuffer(spec.metadata.encode(), dtype=np.uint8).astype(np.uint16)
        opt = self._h5.create_dataset("options", data=meta.reshape(-1, 1))
        opt.attrs["MATLAB_class"] = np.bytes_("char")
        opt.attrs["MATLAB_int_decode"] = np.int32(2)

    def write(self, frames: np.ndarray, start: int) -> None:
        self._array[start : start + len(frames)] = np.transpose(frames, (0, 3, 2, 1))

    def commit(self) -> None:
        self._h5.close()
        write_mat_header(self._staged.tmp)
        self._staged.commit()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._h5.close()
        self._staged.abort()


class _SpooledSink:
    """Frames spooled to a temporary ``.npy`` memmap beside the target, converted on commit
    (for formats written in one call: TIFF, NPZ). The spool is removed either way."""

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self._spool = create_temp_file(
            spec.path.parent, prefix=f".{spec.path.name}.", suffix=".npy"
        )
        try:
            self._array = np.lib.format.open_memmap(
                self._spool, mode="w+", dtype=spec.dtype, shape=spec.shape
            )
        except BaseException:
            self.abort()
            raise

    def write(self, frames: np.ndarray, start: int) -> None:
        self._array[start : start + len(frames)] = frames

    def _save(self, tmp: Path, video: np.ndarray) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self._array.flush()
        try:
            with atomic_path(self.spec.path) as tmp:
                self._save(tmp, self._array)
        finally:
            self.abort()

    def abort(self) -> None:
        with contextlib.suppress(AttributeError):
            del self._array
        self._spool.unlink(missing_ok=True)


class TiffSink(_SpooledSink):
    """ImageJ hyperstack ``TCYX``, written frame by frame (bounded memory); the metadata is the
    ImageJ ``Info`` property."""

    def _save(self, tmp: Path, video: np.ndarray) -> None:
        import tifffile

        t, h, w, c = video.shape

        def pages():
            for i in range(t):
                for ch in range(c):
                    yield np.ascontiguousarray(video[i, :, :, ch])

        tifffile.imwrite(
            tmp,
            pages(),
            shape=(t, c, h, w),
            dtype=video.dtype,
            imagej=True,
            metadata={"axes": "TCYX", "Info": self.spec.metadata},
            photometric="minisblack",
        )


class NpzSink(_SpooledSink):
    """NumPy ``.npz`` (uncompressed): key ``spec.dataset`` ``(T, H, W, C)`` and ``options``."""

    def _save(self, tmp: Path, video: np.ndarray) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **{self.spec.dataset: video, "options": np.array(self.spec.metadata)})


class ZarrSink:
    """Zarr v3 array folder, chunks of 16 frames, attribute ``options``; published by swapping
    the finished folder in (:func:`labsession.core.atomic.replace_dir`)."""

    def __init__(self, spec: SinkSpec) -> None:
        import zarr

        self.spec = spec
        self._tmp = create_temp_dir(spec.path.parent, prefix=f".{spec.path.name}.", suffix=".tmp")
        try:
            self._array = zarr.create_array(
                store=str(self._tmp),
                shape=spec.shape,
                chunks=(min(spec.shape[0], 16), *spec.shape[1:]),
                dtype=spec.dtype,
                overwrite=True,
            )
            self._array.attrs["options"] = spec.metadata
        except BaseException:
            self.abort()
            raise

    def write(self, frames: np.ndarray, start: int) -> None:
        self._array[start : start + len(frames)] = frames

    def commit(self) -> None:
        try:
            flush_trees([self._tmp])
            replace_dir(self._tmp, self.spec.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
