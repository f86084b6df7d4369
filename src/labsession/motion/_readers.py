"""Video readers: TIFF, HDF5, MAT v7.3, NPY, Zarr and in-memory arrays as ``(T, H, W, C)``.

Every reader reads frames on demand (``reader[start:stop]``, ``reader.read_frames(indices)``),
so a video larger than memory is streamed buffer by buffer.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from labsession.core.messages import brief
from labsession.core.paths import file_kind
from labsession.errors import ConfigError
from labsession.motion._checks import as_video
from labsession.motion._tiff import TiffFrames

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
        hyperstacks, OME, or ``tifffile.imwrite`` of a ``(T, H, W[, C])`` array),
        ``.h5``/``.hdf5``/``.hdf``, ``.mat`` (v7.3, MATLAB's ``(H, W[, C], T)``),
        ``.npy`` (memory-mapped) or ``.zarr``.
    dataset_name
        HDF5/MAT dataset; ``None`` takes the largest 3-D or 4-D one.
    channel_idx
        Channels to keep (0-based).

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ConfigError
        If the path is a folder (other than a ``.zarr`` array).
    ValueError
        Unknown format, wrong dimensions, empty video, bad channel index, a TIFF whose axes
        cannot be told (the message says how to save it).
    """
    if isinstance(source, np.ndarray):
        as_video(source, name="input array", check_finite=False)  # shape errors early
        return VideoReader(source, name="input array", channel_idx=channel_idx)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    suffix = path.suffix.lower()
    if path.is_dir() and suffix != ".zarr":
        raise ConfigError(
            f"{path} is a folder; give a video file (TIFF, HDF5, MAT v7.3, NPY or a .zarr "
            f"array) or use `labsession motion run` for a folder of recordings"
        )
    if not path.is_dir() and not path.is_file():  # a pipe would block the open forever
        raise ConfigError(f"{path} is {file_kind(path.stat().st_mode)}, not a video file")
    if suffix in _TIFF:
        import tifffile

        try:
            tif = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, ValueError, OSError) as exc:
            raise ValueError(f"{path}: not a readable TIFF file ({brief(exc)})") from None
        try:
            frames = TiffFrames(tif, path)
        except BaseException:
            tif.close()
            raise
        return VideoReader(frames, name=str(path), channel_idx=channel_idx, closer=frames)
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
