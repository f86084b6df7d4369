"""Frames of a TIFF file as ``(T, H, W, C)``, read on demand (:class:`TiffFrames`).

Layouts read: plain multi-page stacks (one ``H x W`` page per frame, also written one
``TiffWriter.write`` call per frame or per block of frames), ImageJ hyperstacks
(``TZCYX``), OME-TIFF, RGB pages, and tifffile's shaped files: ``tifffile.imwrite(path, video)``
of a ``(T, H, W)`` or ``(T, H, W, C)`` array stores the array's shape but not its axes, and its
pages may be rows of a frame (``(W, C)`` pages for ``C`` other than 3 or 4); such a file is read
as the array written. A file whose axes cannot be told is refused with a message saying how to
save it (``metadata={'axes': 'TYXC'}``).

Uncompressed files whose data lie in one block (what tifffile and ImageJ write) are memory-mapped;
others are read page by page.
"""

from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path

import numpy as np

from labsession.core.messages import brief
from labsession.core.units import format_bytes

__all__ = ["MAX_UNNAMED_CHANNELS", "TiffFrames"]

logger = logging.getLogger(__name__)

#: A 4-D TIFF saved without axes is read as (T, H, W, C) only up to this many channels.
MAX_UNNAMED_CHANNELS = 8
#: Pages at most this wide, and at least twice as tall, look like the rows of a (T, H, W, C) array.
_ROW_PAGE_WIDTH = 8

_HOW_TO_SAVE = (
    "save the video as a (T, H, W, C) array with "
    "tifffile.imwrite(path, video, metadata={'axes': 'TYXC'})"
)


def _named_axes(path: Path, tif: object, axes: str, shape: tuple[int, ...]) -> str:
    """The series' axes, with tifffile's unknown ``Q`` axes named as ``(T, H, W[, C])``."""
    if "Q" not in axes and len(set(axes)) == len(axes):
        if axes == "IYX" and not getattr(tif, "is_shaped", False):
            height, width = shape[1], shape[2]
            if width <= _ROW_PAGE_WIDTH and height >= 2 * width and shape[0] > 1:
                raise ValueError(
                    f"{path}: {shape[0]} pages of {height} x {width} pixels and no shape saved: "
                    f"if it holds a (T, H, W, C) array written page by page, the frames cannot "
                    f"be told apart; {_HOW_TO_SAVE}"
                )
        return axes
    # tifffile.imwrite without axes: the shape is the array's, the axes are not known
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        return "TYX"
    if len(shape) == 4 and shape[3] <= MAX_UNNAMED_CHANNELS:
        return "TYXC"
    why = (
        f"read as (T, H, W, C) it would have {shape[3]} channels"
        if len(shape) == 4
        else "a video is (T, H, W) or (T, H, W, C)"
    )
    raise ValueError(
        f"{path}: an array of shape {shape} saved without its axes ({why}); {_HOW_TO_SAVE}"
    )


#: Series kinds of files without format metadata: tifffile makes one series per ``write`` call.
_PLAIN_KINDS = frozenset({"shaped", "generic", "uniform"})


def _describe(series: list[object]) -> str:
    shown = ", ".join(
        f"{tuple(s.shape)} {s.dtype}"  # type: ignore[attr-defined]
        for s in series[:4]
    )
    return shown + (f", ... ({len(series)} in all)" if len(series) > 4 else "")


def _rows_of_a_frame(series: object) -> bool:
    """Whether a 3-D series saved without axes holds one ``(H, W, C)`` frame as ``(W, C)`` rows.

    ``TiffWriter.write(frame)`` of an ``(H, W, C)`` frame with ``C`` other than 3 or 4 stores
    ``H`` pages of ``W x C``; a block of ``(T, H, W)`` frames stores ``T`` pages of ``H x W``.
    Narrow pages (at most ``MAX_UNNAMED_CHANNELS`` wide, at least twice as tall) are read as rows.
    """
    _, width, n_ch = (int(n) for n in series.shape)  # type: ignore[attr-defined]
    page = tuple(int(n) for n in series.keyframe.shape)  # type: ignore[attr-defined]
    return page == (width, n_ch) and n_ch <= MAX_UNNAMED_CHANNELS and width >= 2 * n_ch


def _without_previews(series: list[object], path: Path) -> list[object]:
    """``series`` less the previews beside a video: single pages smaller than its frames (a
    thumbnail a writer added), left out with a warning. Without a video of several frames,
    nothing is left out."""
    largest = max(series, key=lambda s: math.prod(s.shape))  # type: ignore[attr-defined]
    frame = tuple(int(n) for n in largest.keyframe.shape)  # type: ignore[attr-defined]
    frames = sum(
        len(s)  # type: ignore[arg-type]
        for s in series
        if tuple(s.keyframe.shape) == frame  # type: ignore[attr-defined]
    )
    if frames < 2:
        return series

    def preview(s: object) -> bool:
        page = tuple(int(n) for n in s.keyframe.shape)  # type: ignore[attr-defined]
        return (
            len(s) == 1  # type: ignore[arg-type]
            and len(page) == len(frame)
            and all(a <= b for a, b in zip(page, frame, strict=True))
            and math.prod(page) < math.prod(frame)
        )

    previews = [s for s in series if preview(s)]
    if previews:
        logger.warning(
            "%s: %d small image(s) beside the video (%s) left out, as previews",
            path,
            len(previews),
            _describe(previews),
        )
    return [s for s in series if not any(s is p for p in previews)]


def _joined_blocks(tif: object, series: list[object], path: Path) -> tuple[object, str] | None:
    """Series written one block of frames per ``write`` call, the last block shorter, joined
    along time (None unless every series is frames of one shape and dtype, a page each)."""
    import tifffile

    first = series[0]
    rest = tuple(first.shape[1:])  # type: ignore[attr-defined]
    if (
        len(rest) < 2
        or any(
            s.dtype != first.dtype  # type: ignore[attr-defined]
            or s.axes != first.axes  # type: ignore[attr-defined]
            or tuple(s.shape[1:]) != rest  # type: ignore[attr-defined]
            or len(s) != int(s.shape[0])  # type: ignore[arg-type, attr-defined]
            for s in series
        )
    ):
        return None
    pages = [page for s in series for page in s]  # type: ignore[attr-defined]
    shape = (len(pages), *rest)
    joined = tifffile.TiffPageSeries(
        pages,
        shape,
        first.dtype,  # type: ignore[attr-defined]
        first.axes,  # type: ignore[attr-defined]
        parent=tif,
        kind=first.kind,  # type: ignore[attr-defined]
        squeeze=False,
    )
    return joined, _named_axes(path, tif, first.axes, shape)  # type: ignore[attr-defined]


def _video_series(tif: object, path: Path) -> tuple[object, str]:
    """The series holding the video and its named axes.

    A file written frame by frame (``for frame in video: writer.write(frame)``) holds one
    tifffile series per ``write`` call; series of the same shape, dtype and axes in a file
    without format metadata are joined along a leading time axis, in file order. Several series
    that cannot form one video are refused, naming their shapes.
    """
    import tifffile

    all_series = list(tif.series)  # type: ignore[attr-defined]
    if not all_series:
        raise ValueError(f"{path}: the TIFF file holds no image")
    kinds = {s.kind for s in all_series}
    if len(all_series) > 1 and kinds <= _PLAIN_KINDS:
        all_series = _without_previews(all_series, path)
    first = all_series[0]
    shape = tuple(int(n) for n in first.shape)
    axes = _named_axes(path, tif, first.axes, shape)
    if len(all_series) == 1:
        return first, axes
    same = all(
        tuple(s.shape) == tuple(first.shape) and s.dtype == first.dtype and s.axes == first.axes
        for s in all_series
    )
    if not same and kinds <= _PLAIN_KINDS:
        blocks = _joined_blocks(tif, all_series, path)
        if blocks is not None:
            return blocks
    if not (same and kinds <= _PLAIN_KINDS):
        what = "of different shapes or dtypes" if not same else f"of kind {sorted(kinds)}"
        raise ValueError(
            f"{path}: the TIFF file holds {len(all_series)} image series {what} "
            f"({_describe(all_series)}), which do not form one video; save one video per file, "
            f"e.g. {_HOW_TO_SAVE}"
        )
    if "Q" in first.axes and axes == "TYX" and _rows_of_a_frame(first):
        axes = "YXC"  # one (H, W, C) frame per write call, stored as rows (W, C)
    pages = [page for s in all_series for page in s]
    series_axis = next(a for a in "IJKLMNOP" if a not in axes and a not in first.axes)
    joined = tifffile.TiffPageSeries(
        pages,
        (len(all_series), *first.shape),
        first.dtype,
        series_axis + first.axes,
        parent=tif,
        kind=first.kind,
        squeeze=False,
    )
    return joined, series_axis + axes


class TiffFrames:
    """Frame access to the video of an open ``tifffile.TiffFile``.

    The video is the file's one series, or its series joined along time when the file was
    written frame by frame (one tifffile series per ``write`` call, all of one shape).

    Attributes
    ----------
    shape
        ``(T, H, W, C)``: every axis other than height (Y), width (X) and channels (C or S)
        counts as time, in the file's order (``T`` and ``Z`` of a hyperstack give ``T * Z``
        frames).

    Raises
    ------
    ValueError
        A layout whose frames cannot be told apart (the message says how to save the video).
    """

    def __init__(self, tif: object, path: str | Path = "TIFF") -> None:
        path = Path(path)
        series, axes = _video_series(tif, path)
        shape = tuple(int(n) for n in series.shape)  # type: ignore[attr-defined]
        if "Y" not in axes or "X" not in axes:
            raise ValueError(f"{path}: TIFF series has axes {axes!r} without Y and X")
        # Axes of one element do not move any data: leave them out (but keep Y and X).
        kept = [(a, n) for a, n in zip(axes, shape, strict=True) if n > 1 or a in "YX"]
        channel = [a for a, _ in kept if a in "CS"]
        if len(channel) > 1:
            raise ValueError(
                f"{path}: TIFF series with both C and S axes ({axes!r}) is unsupported"
            )
        self._channel = channel[0] if channel else None
        self._axes = [a for a, _ in kept]
        self._sizes = [n for _, n in kept]
        sizes = dict(kept)
        time_axes = [a for a in self._axes if a not in ("Y", "X", self._channel)]
        self._time_shape = tuple(sizes[a] for a in time_axes)
        n_frames = math.prod(self._time_shape)
        n_ch = sizes[self._channel] if self._channel else 1
        self.shape = (n_frames, sizes["Y"], sizes["X"], n_ch)
        self._tif = tif
        self._path = path
        # Source order: time axes first, then the frame's own axes as stored.
        self._time_first = self._axes[: len(time_axes)] == time_axes
        frame_axes = [a for a in self._axes if a not in time_axes]
        self._to_yxc = [frame_axes.index("Y"), frame_axes.index("X")]
        if self._channel:
            self._to_yxc.append(frame_axes.index(self._channel))
        self._frame_axes = frame_axes
        self._series = series
        self._view = self._memory_map(series)
        self._page_elems = math.prod(int(n) for n in series.keyframe.shape)
        if self._view is None:
            self._check_pages(series)

    # -- sources ---------------------------------------------------------------------------------
    def _memory_map(self, series: object) -> np.ndarray | None:
        """A ``(T, H, W[, C])`` view of the file's data, or None if not stored in one block."""
        offset = getattr(series, "dataoffset", None)
        if offset is None:
            return None
        dtype = np.dtype(series.dtype).newbyteorder(self._tif.byteorder)  # type: ignore[attr-defined]
        try:
            data = np.memmap(
                self._path, dtype=dtype, mode="r", offset=offset, shape=tuple(self._sizes)
            )
        except (OSError, ValueError):  # a truncated file: read page by page, which says so
            return None
        order = [self._axes.index(a) for a in self._axes if a not in self._frame_axes]
        order += [self._axes.index(a) for a in self._frame_axes]
        return np.transpose(data, order)  # time axes first, then the frame's axes, as stored

    def _check_pages(self, series: object) -> None:
        n_pages = len(series)  # type: ignore[arg-type]
        keyframe = series.keyframe  # type: ignore[attr-defined]
        declared = n_pages * int(keyframe.nbytes)
        if keyframe.compression == 1 and declared > self._path.stat().st_size:
            raise ValueError(
                f"{self._path}: TIFF pages declare {declared} bytes of uncompressed data, the "
                f"file holds {self._path.stat().st_size}: is it truncated?"
            )
        frame_elems = math.prod(self.shape[1:])
        if n_pages * self._page_elems != math.prod(self._sizes):
            raise ValueError(
                f"{self._path}: TIFF pages of shape {series.keyframe.shape} do not tile its "  # type: ignore[attr-defined]
                f"series of shape {tuple(series.shape)} ({series.axes}); {_HOW_TO_SAVE}"  # type: ignore[attr-defined]
            )
        plane = self._axes[-2:] == ["Y", "X"] and self._page_elems == math.prod(self.shape[1:3])
        if self._time_first and frame_elems % self._page_elems == 0:
            self._pages_per_frame = frame_elems // self._page_elems
        elif plane:  # one Y x X plane per page, channels among the time axes
            self._pages_per_frame = 0
        else:
            raise ValueError(
                f"{self._path}: TIFF pages of shape {series.keyframe.shape} cannot be read frame "  # type: ignore[attr-defined]
                f"by frame ({series.axes} {tuple(series.shape)}); {_HOW_TO_SAVE}"  # type: ignore[attr-defined]
            )

    def _time_index(self, frames: np.ndarray | int) -> tuple[np.ndarray, ...]:
        """Indices of ``frames`` along the time axes (none when the file holds one frame)."""
        return np.unravel_index(frames, self._time_shape) if self._time_shape else ()

    def _page_keys(self, frames: list[int]) -> list[int]:
        if self._pages_per_frame:
            k = self._pages_per_frame
            return [t * k + j for t in frames for j in range(k)]
        # planes: page index over every non-YX axis in file order, channel included
        outer = self._axes[:-2]
        outer_shape = tuple(self._sizes[:-2])
        time_axes = [a for a in outer if a != self._channel]
        keys = []
        for t in frames:
            coords = dict(zip(time_axes, self._time_index(t), strict=True))
            for c in range(self.shape[3] if self._channel else 1):
                if self._channel:
                    coords[self._channel] = c
                keys.append(int(np.ravel_multi_index([coords[a] for a in outer], outer_shape)))
        return keys

    # -- reading ---------------------------------------------------------------------------------
    def __getitem__(self, index: slice | list[int]) -> np.ndarray:
        frames = list(range(self.shape[0])[index] if isinstance(index, slice) else index)
        try:
            out = np.empty((len(frames), *self.shape[1:]), dtype=np.float32)
            if not frames:
                return out
            return self._read(frames, out)
        except (ValueError, OSError, zlib.error) as exc:  # tifffile's own errors among them
            raise ValueError(
                f"{self._path}: cannot read frames of the TIFF file: {brief(exc)}"
            ) from None
        except MemoryError:  # e.g. a compressed file whose header declares huge frames
            _, height, width, n_ch = self.shape
            size = format_bytes(len(frames) * height * width * n_ch * 4)
            raise ValueError(
                f"{self._path}: {len(frames)} frames of {height}x{width}x{n_ch} as the TIFF "
                f"declares them ({size} as float32) do not fit in memory; read fewer frames at "
                "a time (buffer_size) or check the file"
            ) from None

    def _read(self, frames: list[int], out: np.ndarray) -> np.ndarray:
        if self._view is not None:
            idx = self._time_index(np.asarray(frames))
            if idx:
                block = np.asarray(self._view[idx])  # (n, *frame axes as stored)
            else:  # the file's one frame
                block = np.repeat(np.asarray(self._view)[None], len(frames), axis=0)
        elif self._pages_per_frame:
            data = self._tif.asarray(key=self._page_keys(frames), series=self._series)  # type: ignore[attr-defined]
            frame_shape = [self._sizes[self._axes.index(a)] for a in self._frame_axes]
            block = np.asarray(data).reshape(len(frames), *frame_shape)
        else:  # one page per plane: (n, C, H, W) in page order
            data = self._tif.asarray(key=self._page_keys(frames), series=self._series)  # type: ignore[attr-defined]
            planes = np.asarray(data).reshape(len(frames), -1, *self.shape[1:3])
            out[:] = np.moveaxis(planes, 1, -1)
            return out
        block = np.transpose(block, (0, *(i + 1 for i in self._to_yxc)))
        out[:] = block if self._channel else block[..., None]
        return out

    def close(self) -> None:
        """Release the memory map and close the file."""
        self._view = None
        self._tif.close()  # type: ignore[attr-defined]
