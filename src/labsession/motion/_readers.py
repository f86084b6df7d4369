"""Video readers: TIFF, HDF5, MAT v7.3, NPY, NPZ, Zarr and in-memory arrays as ``(T, H, W, C)``.

Every reader reads frames on demand (``reader[start:stop]``, ``reader.read_frames(indices)``),
so a video larger than memory is streamed buffer by buffer. :func:`open_video` picks the reader
from the path's suffix in the format registry (:mod:`labsession.motion._formats`); the built-in
reader functions (``read_tiff``, ``read_hdf5``, ...) are registered there.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from labsession.core.messages import brief
from labsession.core.paths import file_kind
from labsession.errors import ConfigError
from labsession.motion._checks import as_video
from labsession.motion._tiff import TiffFrames

__all__ = [
    "VideoReader",
    "open_video",
    "read_hdf5",
    "read_mat",
    "read_npy",
    "read_npz",
    "read_tiff",
    "read_zarr",
]

logger = logging.getLogger(__name__)


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


#: Per-channel dataset names as pyflowreg and Flow-Registration write them (``ch1``, ``ch2``...):
#: the last name component holds ``ch``, ``chan`` or ``channel`` and a number as a token of its
#: own (``mov_ch1``, ``channel_2``, ``Ch 3``, ``ch1_raw``), never inside a word (``patch0``).
_CHANNEL_NAME = re.compile(
    r"^(?P<prefix>(?:.*[_.\s-])?)(?:ch|chan|channel)[_.\s-]*(?P<number>\d+)(?P<suffix>[_.\s-].*)?$",
    re.IGNORECASE,
)


class _ChannelStack:
    """Per-channel ``(T, H, W)`` datasets of one file read as one ``(T, H, W, C)`` source."""

    def __init__(self, datasets: list[object]) -> None:
        self._datasets = datasets
        self.shape = (*datasets[0].shape, len(datasets))  # type: ignore[attr-defined]

    def __getitem__(self, index: slice | list[int]) -> np.ndarray:
        return np.stack([np.asarray(d[index]) for d in self._datasets], axis=-1)  # type: ignore[index]


def _videos(h5file: object) -> list[tuple[str, tuple[int, ...]]]:
    import h5py

    found: list[tuple[str, tuple[int, ...]]] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim in (3, 4):
            found.append((name, tuple(obj.shape)))

    h5file.visititems(visit)  # type: ignore[attr-defined]
    return found


def _channel_group(videos: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    """The largest group of same-shaped 3-D ``ch<N>`` datasets, in channel order.

    Datasets group by their folder and the name around the channel token (``mov_ch1`` and
    ``mov_ch2``; ``raw/ch1`` and ``raw/ch2``); a group whose shapes differ is no group.
    """
    groups: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    for name, shape in videos:
        folder, _, leaf = name.rpartition("/")
        match = _CHANNEL_NAME.match(leaf)
        if match and len(shape) == 3:
            key = (folder, match["prefix"].lower(), (match["suffix"] or "").lower())
            groups.setdefault(key, []).append((int(match["number"]), name))
    shapes = dict(videos)
    valid = [sorted(g) for g in groups.values() if len({shapes[n] for _, n in g}) == 1]
    valid = [g for g in valid if len({number for number, _ in g}) == len(g)]  # ch1 twice: no
    if not valid:
        return []
    best = max(valid, key=lambda g: (len(g) * int(np.prod(shapes[g[0][1]])), len(g)))
    return [name for _, name in best]


def _largest_dataset(h5file: object, path: Path) -> str:
    found = [(int(np.prod(shape)), name) for name, shape in _videos(h5file)]
    if not found:
        raise ValueError(f"{path}: no 3-D or 4-D dataset found; pass dataset_name")
    return max(found)[1]


def read_tiff(
    path: Path, *, dataset_name: str | None = None, channel_idx: list[int] | None = None
) -> VideoReader:
    """Multi-page TIFF, ImageJ hyperstack, OME-TIFF or ``tifffile.imwrite`` of a video."""
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


def _read_h5(
    path: Path, dataset_name: str | None, channel_idx: list[int] | None, *, matlab: bool
) -> VideoReader:
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        hint = " (only MAT v7.3 files, which are HDF5, are supported)" if matlab else ""
        raise ValueError(f"{path}: cannot open as HDF5{hint}: {exc}") from exc
    try:
        videos = [] if matlab or dataset_name else _videos(h5)
        channels = _channel_group(videos)
        largest = max((int(np.prod(shape)) for _, shape in videos), default=0)
        if channels and len(channels) * int(np.prod(h5[channels[0]].shape)) >= largest:
            # pyflowreg's HDF5 files: one (T, H, W) dataset per channel, together the largest
            stack = _ChannelStack([h5[n] for n in channels])
            name = f"{path}:{'+'.join(channels)}"
            return VideoReader(stack, name=name, channel_idx=channel_idx, closer=h5)
        name = dataset_name or _largest_dataset(h5, path)
        if name not in h5:
            raise ValueError(f"{path}: no dataset {name!r}; found {list(h5.keys())}")
        layout = "matlab" if matlab else "thwc"
        return VideoReader(
            h5[name], layout=layout, name=f"{path}:{name}", channel_idx=channel_idx, closer=h5
        )
    except BaseException:
        h5.close()
        raise


def read_hdf5(
    path: Path, *, dataset_name: str | None = None, channel_idx: list[int] | None = None
) -> VideoReader:
    """HDF5 dataset ``(T, H, W[, C])``: ``dataset_name``; else per-channel ``(T, H, W)`` datasets
    ``ch1``, ``ch2``... (pyflowreg's HDF5 output) of one shape read as channels, when together
    they are at least as large as any other dataset; else the largest 3-D/4-D dataset."""
    return _read_h5(path, dataset_name, channel_idx, matlab=False)


def read_mat(
    path: Path, *, dataset_name: str | None = None, channel_idx: list[int] | None = None
) -> VideoReader:
    """MAT v7.3 variable, MATLAB's ``(H, W[, C], T)``: ``dataset_name`` or the largest one."""
    return _read_h5(path, dataset_name, channel_idx, matlab=True)


def read_npy(
    path: Path, *, dataset_name: str | None = None, channel_idx: list[int] | None = None
) -> VideoReader:
    """NumPy ``.npy`` ``(T, H, W[, C])``, memory-mapped."""
    return VideoReader(np.load(path, mmap_mode="r"), name=str(path), channel_idx=channel_idx)


def read_npz(
    path: Path, *, dataset_name: str | None = None, channel_idx: list[int] | None = None
) -> VideoReader:
    """NumPy ``.npz``: key ``dataset_name`` or the largest 3-D/4-D array (memory-mapped when
    stored uncompressed, as ``numpy.savez`` and the NPZ writer store it; loaded otherwise)."""
    from labsession.motion._npz import npz_arrays

    arrays = npz_arrays(path)
    if dataset_name is None:
        videos = [(int(np.prod(a.shape)), k) for k, a in arrays.items() if len(a.shape) in (3, 4)]
        if not videos:
            raise ValueError(f"{path}: no 3-D or 4-D array found; pass dataset_name")
        dataset_name = max(videos)[1]
    if dataset_name not in arrays:
        raise ValueError(f"{path}: no array {dataset_name!r}; found {sorted(arrays)}")
    return VideoReader(
        arrays[dataset_name].open(),
        name=f"{path}:{dataset_name}",
        channel_idx=channel_idx,
    )


def read_zarr(
    path: Path, *, dataset_name: str | None = None, channel_idx: list[int] | None = None
) -> VideoReader:
    """Zarr array folder ``(T, H, W[, C])``."""
    import zarr

    array = zarr.open_array(path, mode="r")
    return VideoReader(array, name=str(path), channel_idx=channel_idx)


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
        Array ``(T, H, W[, C])``, or a path whose suffix names a registered format
        (:func:`~labsession.motion.register_video_format`); built in: ``.tif``/``.tiff``
        (multi-page, ImageJ hyperstacks, OME, or ``tifffile.imwrite`` of a ``(T, H, W[, C])``
        array), ``.h5``/``.hdf5``/``.hdf``, ``.mat`` (v7.3, MATLAB's ``(H, W[, C], T)``),
        ``.npy`` (memory-mapped), ``.npz`` and ``.zarr``.
    dataset_name
        HDF5/MAT dataset or NPZ key; ``None`` takes the largest 3-D or 4-D one (for HDF5,
        same-shaped per-channel ``(T, H, W)`` datasets ``ch1``, ``ch2``..., as pyflowreg writes
        them, count as one video of their channels: taken when together they are the largest).
    channel_idx
        Channels to keep (0-based).

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ConfigError
        If the path is a folder (other than a folder format such as ``.zarr``).
    ValueError
        Unknown format, wrong dimensions, empty video, bad channel index, a TIFF whose axes
        cannot be told (the message says how to save it).
    """
    from labsession.motion._formats import format_for_path, readable_description

    if isinstance(source, np.ndarray):
        as_video(source, name="input array", check_finite=False)  # shape errors early
        return VideoReader(source, name="input array", channel_idx=channel_idx)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    known = format_for_path(path, required=False)
    if path.is_dir() and not (known and known.folder):
        raise ConfigError(
            f"{path} is a folder; give a video file ({readable_description()}) "
            f"or use `labsession motion run` for a folder of recordings"
        )
    if not path.is_dir() and not path.is_file():  # a pipe would block the open forever
        raise ConfigError(f"{path} is {file_kind(path.stat().st_mode)}, not a video file")
    fmt = known or format_for_path(path)  # raises for an unknown suffix
    reader = fmt.reader  # type: ignore[union-attr]  # the suffix table holds readable formats
    return reader(path, dataset_name=dataset_name, channel_idx=channel_idx)
