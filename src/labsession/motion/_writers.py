"""Video writers (HDF5, MAT v7.3, TIFF, NPZ, Zarr), fed buffer by buffer, committed atomically.

A writer is created with the final shape ``(T, H, W, C)``, receives frames with
:meth:`VideoWriter.write` and publishes the file only in :meth:`VideoWriter.close`, by renaming
a temporary file beside the target; :meth:`VideoWriter.abort` (or an exception inside the
``with`` block) removes the temporary and leaves any earlier file untouched. Files and folders
written follow the umask. Each file carries
the options as JSON metadata (HDF5/Zarr attribute ``options``, TIFF description, NPZ/MAT entry
``options``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from labsession.core.atomic import atomic_path, create_temp_dir, create_temp_file, fsync_dir

__all__ = ["SUFFIXES", "VideoWriter", "write_mat_header"]

#: File suffix written for each output format.
SUFFIXES = {"HDF5": ".h5", "MAT": ".mat", "TIFF": ".tif", "NPZ": ".npz", "ZARR": ".zarr"}


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


class VideoWriter:
    """Write a ``(T, H, W, C)`` float32 video in buffers to ``path`` in ``fmt``.

    Parameters
    ----------
    path
        Target file (or folder for Zarr). Its folder must exist.
    fmt
        ``"HDF5"``, ``"MAT"``, ``"TIFF"``, ``"NPZ"`` or ``"ZARR"``.
    shape
        Final ``(T, H, W, C)``.
    metadata
        JSON-ready mapping stored with the data (the options used).
    dataset
        Dataset/key name for HDF5, MAT, NPZ.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: str,
        *,
        shape: tuple[int, int, int, int],
        metadata: dict[str, Any] | None = None,
        dataset: str = "mov",
        dtype: str = "float32",
    ) -> None:
        if fmt not in SUFFIXES:
            raise ValueError(f"unknown output format {fmt!r}; use one of {sorted(SUFFIXES)}")
        self.path = Path(path)
        self.fmt = fmt
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.dataset = dataset
        self._meta = json.dumps(metadata or {}, default=str)
        self._n = 0
        self._stack = contextlib.ExitStack()
        self._tmp: Path
        self._open()

    # -- lifecycle ------------------------------------------------------------------------
    def _open(self) -> None:
        if self.fmt == "ZARR":
            import zarr

            self._tmp = create_temp_dir(
                self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
            chunks = (min(self.shape[0], 16), *self.shape[1:])
            self._array = zarr.create_array(
                store=str(self._tmp),
                shape=self.shape,
                chunks=chunks,
                dtype=self.dtype,
                overwrite=True,
            )
            self._array.attrs["options"] = self._meta
            return
        if self.fmt in ("HDF5", "MAT"):
            import h5py

            self._tmp = self._stack.enter_context(atomic_path(self.path))
            userblock = 512 if self.fmt == "MAT" else 0
            self._h5 = h5py.File(self._tmp, "w", userblock_size=userblock)
            if self.fmt == "HDF5":
                chunks = (1, *self.shape[1:])
                self._array = self._h5.create_dataset(
                    self.dataset,
                    shape=self.shape,
                    dtype=self.dtype,
                    chunks=chunks,
                    compression="gzip",
                    compression_opts=1,
                )
                self._array.attrs["options"] = self._meta
            else:  # MATLAB reads HDF5 axes reversed: store (T, C, W, H) for (H, W, C, T)
                t, h, w, c = self.shape
                self._array = self._h5.create_dataset(
                    self.dataset, shape=(t, c, w, h), dtype=self.dtype, chunks=(1, c, w, h)
                )
                self._array.attrs["MATLAB_class"] = np.bytes_(
                    "single" if self.dtype == np.float32 else "double"
                )
                meta = np.frombuffer(self._meta.encode(), dtype=np.uint8).astype(np.uint16)
                opt = self._h5.create_dataset("options", data=meta.reshape(-1, 1))
                opt.attrs["MATLAB_class"] = np.bytes_("char")
                opt.attrs["MATLAB_int_decode"] = np.int32(2)
            return
        # TIFF and NPZ: spool to a temporary .npy memmap, convert on close.
        self._spool = create_temp_file(
            self.path.parent, prefix=f".{self.path.name}.", suffix=".npy"
        )
        self._array = np.lib.format.open_memmap(
            self._spool, mode="w+", dtype=self.dtype, shape=self.shape
        )

    def write(self, frames: np.ndarray) -> None:
        """Append ``frames`` ``(n, H, W, C)``."""
        frames = np.asarray(frames, dtype=self.dtype)
        if frames.shape[1:] != self.shape[1:] or self._n + len(frames) > self.shape[0]:
            raise ValueError(
                f"{self.path}: cannot write frames of shape {frames.shape} at frame {self._n} "
                f"into a video of shape {self.shape}"
            )
        end = self._n + len(frames)
        if self.fmt == "MAT":
            self._array[self._n : end] = np.transpose(frames, (0, 3, 2, 1))
        else:
            self._array[self._n : end] = frames
        self._n = end

    def close(self) -> Path:
        """Finish the file and publish it at ``path`` atomically; returns ``path``."""
        if self._n != self.shape[0]:
            self.abort()
            raise ValueError(
                f"{self.path}: only {self._n} of {self.shape[0]} frames were written; "
                "the file was not created"
            )
        if self.fmt in ("HDF5", "MAT"):
            self._h5.close()
            if self.fmt == "MAT":
                write_mat_header(self._tmp)
            self._stack.close()
        elif self.fmt == "ZARR":
            if self.path.exists():
                shutil.rmtree(self.path)
            os.replace(self._tmp, self.path)
            fsync_dir(self.path.parent)
        else:
            self._array.flush()
            try:
                if self.fmt == "TIFF":
                    with atomic_path(self.path) as tmp:
                        _write_tiff(tmp, self._array, self._meta)
                else:
                    with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
                        np.savez(f, **{self.dataset: self._array, "options": np.array(self._meta)})
            finally:
                del self._array
                self._spool.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        """Drop everything written; the target path is left as it was."""
        if self.fmt in ("HDF5", "MAT"):
            with contextlib.suppress(Exception):
                self._h5.close()
            with contextlib.suppress(RuntimeError):
                self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)
        elif self.fmt == "ZARR":
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            with contextlib.suppress(AttributeError):
                del self._array
            self._spool.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _write_tiff(tmp: Path, video: np.ndarray, meta: str) -> None:
    """ImageJ hyperstack ``TCYX`` written frame by frame (bounded memory)."""
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
        metadata={"axes": "TCYX", "Info": meta},
        photometric="minisblack",
    )
