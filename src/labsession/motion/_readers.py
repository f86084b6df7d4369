"""Video readers: TIFF, HDF5, MAT v7.3, NPY, Zarr and in-memory arrays as ``(T, H, W, C)``.

Every reader reads frames on demand (``reader[start:stop]``, ``reader.read_frames(indices)``),
so a video larger than memory is streamed buffer by buffer.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from labsession.motion._checks import as_video

__all__ = ["VideoReader", "open_video"]

logger = logging.getLogger(__name__)

_TIFF = {".tif", ".tiff"}
_HDF5 = {".h5", ".hdf5", ".hdf"}


class VideoReader:
    """Frames of a video as float32 ``(T, H, W, C)``, read lazily from ``source``.

    ``source`` is any object with ``shape`` and ``__getitem__`` over its first (time) axis
    (h5py/zarr datasets, memmaps, arrays), with ``layout`` telling how its axes map to
    ``(T, H, W, C)``: ``"thwc"`` (or ``"thw"``) as stored, or ``"matlab"`` for MATLAB v7.3
    files, whose arrays appear axis-reversed (``(T, C, W, H)`` for MATLAB's ``(H, W, C, T)``).
    """

    def __init__(
        self,
        source: object,
        *,
        layout: str = "thwc",
        name: str = "video",
        channel_idx: list[int] | None = None,
        closer: object = None,
    ) -> None:
        self._source = source
        self._layout = layout
        self.name = name
        self._closer = closer
        shape = tuple(source.shape)  # type: ignore[attr-defined]
        if layout == "matlab":
            if len(shape) not in (3, 4):
                raise ValueError(f"{name}: MATLAB array must be 3-D or 4-D, got shape {shape}")
            full = (shape[0], shape[-1], shape[-2], shape[1] if len(shape) == 4 else 1)
        else:
            if len(shape) not in (3, 4):
                raise ValueError(
                    f"{name}: expected (T, H, W) or (T, H, W, C), got {len(shape)} dimensions "
                    f"with shape {shape}"
                )
            full = (*shape, 1) if len(shape) == 3 else shape
        if full[0] == 0:
            raise ValueError(f"{name} is empty: it has 0 frames (shape {shape})")
        n_ch = full[3]
        self._channels = list(range(n_ch)) if channel_idx is None else list(channel_idx)
        bad = [c for c in self._channels if not 0 <= c < n_ch]
        if bad:
            raise ValueError(f"{name}: channel_idx {bad} out of range for {n_ch} channel(s)")
        self.shape = (full[0], full[1], full[2], len(self._channels))

    def __len__(self) -> int:
        return self.shape[0]

    def _convert(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        if self._layout == "matlab":
            block = block[:, None] if block.ndim == 3 else block  # (n, C, W, H)
            block = np.transpose(block, (0, 3, 2, 1))
        elif block.ndim == 3:
            block = block[..., None]
        block = block[..., self._channels]
        return as_video(block, name=self.name)

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("index a VideoReader with a slice of frames, e.g. reader[0:100]")
        start, stop, step = index.indices(len(self))
        return self._convert(self._source[start:stop:step])  # type: ignore[index]

    def read_frames(self, indices: list[int] | np.ndarray) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as ``(N, H, W, C)`` float32."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.name}: frame indices must be in [0, {len(self)})")
        order = np.unique(idx)
        if not order.size:
            block = self._convert(self._source[0:0])  # type: ignore[index]
        elif hasattr(self._source, "oindex"):  # zarr
            block = self._convert(self._source.oindex[order])  # type: ignore[attr-defined]
        else:
            block = self._convert(self._source[order.tolist()])  # type: ignore[index]
        return block[np.searchsorted(order, idx)]

    def close(self) -> None:
        """Close the underlying file, if any."""
        if self._closer is not None:
            self._closer.close()  # type: ignore[attr-defined]
            self._closer = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TiffFrames:
    """Frame access to a TIFF series (multi-page stacks and ImageJ hyperstacks)."""

    def __init__(self, tif: object) -> None:
        series = tif.series[0]  # type: ignore[attr-defined]
        axes = series.axes
        shape = dict(zip(axes, series.shape, strict=True))
        if "Y" not in shape or "X" not in shape:
            raise ValueError(f"TIFF series has axes {axes!r} without Y and X")
        if "C" in shape and "S" in shape:
            raise ValueError(f"TIFF series with both C and S axes ({axes!r}) is not supported")
        self._tif = tif
        self._page_axes = [a for a in axes if a not in "YXS"]
        self._page_shape = tuple(shape[a] for a in self._page_axes)
        self._channel_axis = "C" if "C" in shape else None
        n_ch = shape.get("C", shape.get("S", 1))
        n_pages = int(np.prod(self._page_shape)) if self._page_shape else 1
        frames = n_pages // (shape["C"] if self._channel_axis else 1)
        self._samples = "S" in shape
        self.shape = (frames, shape["Y"], shape["X"], n_ch)
        self._axes = axes

    def _page_index(self, t: int, c: int) -> int:
        if not self._page_axes:
            return 0
        time_axes = [a for a in self._page_axes if a != "C"]
        time_shape = tuple(
            dict(zip(self._page_axes, self._page_shape, strict=True))[a] for a in time_axes
        )
        coords = dict(
            zip(time_axes, np.unravel_index(t, time_shape) if time_shape else (), strict=True)
        )
        if self._channel_axis:
            coords["C"] = c
        return int(
            np.ravel_multi_index(tuple(coords[a] for a in self._page_axes), self._page_shape)
        )

    def __getitem__(self, index: slice | list[int]) -> np.ndarray:
        frames = range(self.shape[0])[index] if isinstance(index, slice) else index
        frames = list(frames)
        n_ch = self.shape[3]
        out = np.empty((len(frames), *self.shape[1:]), dtype=np.float32)
        if not frames:
            return out
        per_page_ch = 1 if self._channel_axis else n_ch
        n_page_ch = n_ch if self._channel_axis else 1
        keys = [self._page_index(t, c) for t in frames for c in range(n_page_ch)]
        data = self._tif.asarray(key=keys, series=0)  # type: ignore[attr-defined]
        data = np.asarray(data).reshape(len(frames), n_page_ch, *self.shape[1:3], per_page_ch)
        if self._channel_axis:
            out[:] = np.moveaxis(data[..., 0], 1, -1)
        else:
            out[:] = data[:, 0]
        return out


def _largest_dataset(h5file: object, path: Path) -> str:
    import h5py

    found: list[tuple[int, str]] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim in (3, 4):
            found.append((int(np.prod(obj.shape)), name))

    h5file.visititems(visit)  # type: ignore[attr-defined]
    if not found:
        raise ValueError(f"{path}: no 3-D or 4-D dataset found; pass dataset_name")
    return max(found)[1]


def open_video(
    source: str | os.PathLike[str] | np.ndarray,
    *,
    dataset_name: str | None = None,
    channel_idx: list[int] | None = None,
) -> VideoReader:
    """Open a video for lazy reading as ``(T, H, W, C)`` float32.

    Parameters
    ----------
    source
        Array ``(T, H, W[, C])``, or a path: ``.tif``/``.tiff`` (multi-page, ImageJ
        hyperstacks), ``.h5``/``.hdf5``/``.hdf``, ``.mat`` (v7.3, MATLAB's ``(H, W[, C], T)``),
        ``.npy`` (memory-mapped) or ``.zarr``.
    dataset_name
        HDF5/MAT dataset; ``None`` takes the largest 3-D or 4-D one.
    channel_idx
        Channels to keep (0-based).

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        Unknown format, wrong dimensions, empty video, bad channel index.
    """
    if isinstance(source, np.ndarray):
        as_video(source, name="input array", check_finite=False)  # shape errors early
        return VideoReader(source, name="input array", channel_idx=channel_idx)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in _TIFF:
        import tifffile

        tif = tifffile.TiffFile(path)
        try:
            frames = _TiffFrames(tif)
        except BaseException:
            tif.close()
            raise
        return VideoReader(frames, name=str(path), channel_idx=channel_idx, closer=tif)
    if suffix in _HDF5 or suffix == ".mat":
        import h5py

        try:
            h5 = h5py.File(path, "r")
        except OSError as exc:
            hint = (
                " (only MAT v7.3 files, which are HDF5, are supported)" if suffix == ".mat" else ""
            )
            raise ValueError(f"{path}: cannot open as HDF5{hint}: {exc}") from exc
        try:
            name = dataset_name or _largest_dataset(h5, path)
            if name not in h5:
                raise ValueError(f"{path}: no dataset {name!r}; found {list(h5.keys())}")
            layout = "matlab" if suffix == ".mat" else "thwc"
            return VideoReader(
                h5[name], layout=layout, name=f"{path}:{name}", channel_idx=channel_idx, closer=h5
            )
        except BaseException:
            h5.close()
            raise
    if suffix == ".npy":
        return VideoReader(np.load(path, mmap_mode="r"), name=str(path), channel_idx=channel_idx)
    if suffix == ".zarr":
        import zarr

        array = zarr.open_array(path, mode="r")
        return VideoReader(array, name=str(path), channel_idx=channel_idx)
    raise ValueError(
        f"{path}: unknown video format {suffix!r}; use .tif, .tiff, .h5, .hdf5, .hdf, .mat, "
        ".npy or .zarr"
    )
