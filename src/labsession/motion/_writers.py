"""Video writers, fed buffer by buffer, committed atomically, in any registered format.

A writer is created with the final shape ``(T, H, W, C)``, receives frames with
:meth:`VideoWriter.write` and publishes the file only in :meth:`VideoWriter.close`, by renaming
a temporary file (or folder) beside the target; :meth:`VideoWriter.abort` (or an exception
inside the ``with`` block) removes the temporary and leaves any earlier file untouched. Files
and folders written follow the umask. Each file carries the options as JSON metadata (HDF5/Zarr
attribute ``options``, TIFF description, NPZ/MAT entry ``options``).

The writing itself is done by the format's sink (:mod:`labsession.motion._sinks`), found in the
format registry (:func:`~labsession.motion.register_video_format`); this class checks what
every sink would otherwise check: the frames' shape, their count, their dtype.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from labsession.motion._formats import SUFFIXES, video_format
from labsession.motion._sinks import SinkSpec, VideoSink, write_mat_header

__all__ = ["SUFFIXES", "VideoWriter", "write_mat_header"]


class VideoWriter:
    """Write a ``(T, H, W, C)`` video in buffers to ``path`` in format ``fmt``.

    Parameters
    ----------
    path
        Target file (or folder for Zarr). Its folder must exist.
    fmt
        A registered format: ``"HDF5"``, ``"MAT"``, ``"TIFF"``, ``"NPZ"``, ``"ZARR"`` or one
        added with :func:`~labsession.motion.register_video_format` (case-insensitive).
    shape
        Final ``(T, H, W, C)``.
    metadata
        JSON-ready mapping stored with the data (the options used).
    dataset
        Dataset/key name for HDF5, MAT, NPZ.
    dtype
        Stored data type (frames are converted to it); ``float32`` by default.

    Raises
    ------
    ConfigError
        If ``fmt`` is not a registered format that can be written.
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
        video_fmt = video_format(fmt)
        if video_fmt.sink is None:
            raise ValueError(
                f"{path}: format {video_fmt.name} is read only; write one of {list(SUFFIXES)}"
            )
        self.path = Path(path)
        self.fmt = video_fmt.name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.dataset = dataset
        self._n = 0
        spec = SinkSpec(
            path=self.path,
            shape=self.shape,  # type: ignore[arg-type]
            dtype=self.dtype,
            dataset=dataset,
            metadata=json.dumps(metadata or {}, default=str),
        )
        self._sink: VideoSink | None = video_fmt.sink(spec)

    def write(self, frames: np.ndarray) -> None:
        """Append ``frames`` ``(n, H, W, C)``."""
        frames = np.asarray(frames, dtype=self.dtype)
        if frames.shape[1:] != self.shape[1:] or self._n + len(frames) > self.shape[0]:
            raise ValueError(
                f"{self.path}: cannot write frames of shape {frames.shape} at frame {self._n} "
                f"into a video of shape {self.shape}"
            )
        if self._sink is None:
            raise ValueError(f"{self.path}: the writer is already closed")
        self._sink.write(frames, self._n)
        self._n += len(frames)

    def close(self) -> Path:
        """Finish the file and publish it at ``path`` atomically; returns ``path``."""
        if self._sink is None:
            raise ValueError(f"{self.path}: the writer is already closed")
        if self._n != self.shape[0]:
            self.abort()
            raise ValueError(
                f"{self.path}: only {self._n} of {self.shape[0]} frames were written; "
                "the file was not created"
            )
        sink, self._sink = self._sink, None
        try:
            sink.commit()
        except BaseException:
            sink.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop everything written; the target path is left as it was."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.abort()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
