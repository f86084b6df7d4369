"""Backward warping of frames by displacement fields, and valid (in-view) masks.

Convention used throughout :mod:`labsession.motion`: a displacement field ``w`` of shape
``(H, W, 2)`` holds ``[u, v]`` (x, y) in pixels, and the registered frame is the moving frame
sampled at ``(y + v, x + u)``. A pixel is *valid* when that sample lies inside the field of view.

"Inside" means within the grid of measured pixel centres, ``0 <= x + u <= W - 1`` and
``0 <= y + v <= H - 1``: there every interpolated value is built from measured pixels. pyflowreg
tests ``x + u < W`` instead, which also counts samples up to one pixel beyond the last column
or row as valid although their value is the border pixel replicated (made up), and is not
symmetric (``x + u = -0.3`` is invalid, ``W - 0.7`` valid). ``bounds="pyflowreg"`` gives its
masks where they must agree bit for bit.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import cv2
import numpy as np

__all__ = [
    "align_sequence",
    "backward_valid_mask",
    "compute_batch_valid_masks",
    "imregister_binary",
    "valid_mask",
    "valid_masks",
    "warp_frame",
    "warp_video",
]

_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
}


@functools.lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    grid_x.flags.writeable = False
    grid_y.flags.writeable = False
    return grid_x, grid_y


def _maps(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid_x, grid_y = _grid(*w.shape[:2])
    return grid_x + w[..., 0].astype(np.float32), grid_y + w[..., 1].astype(np.float32)


Bounds = Literal["exact", "pyflowreg"]


def _inside(map_x: np.ndarray, map_y: np.ndarray, bounds: Bounds = "exact") -> np.ndarray:
    height, width = map_x.shape
    if bounds == "pyflowreg":  # pyflowreg.core.warping.backward_valid_mask: [0, W) x [0, H)
        return (map_x >= 0) & (map_x < width) & (map_y >= 0) & (map_y < height)
    if bounds != "exact":
        raise ValueError(f"bounds must be 'exact' or 'pyflowreg', got {bounds!r}")
    return (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a warp returns: a floating input's own, float32 for anything else."""
    return np.dtype(dtype) if np.issubdtype(dtype, np.floating) else np.dtype(np.float32)


def valid_mask(w: np.ndarray) -> np.ndarray:
    """Pixels whose source ``(y + v, x + u)`` lies inside the image.

    Parameters
    ----------
    w
        Displacement ``(H, W, 2)`` in pixels.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool.
    """
    w = np.asarray(w)
    if w.ndim != 3 or w.shape[2] != 2:
        raise ValueError(f"w must have shape (H, W, 2), got {w.shape}")
    return _inside(*_maps(w))


def valid_masks(w: np.ndarray) -> np.ndarray:
    """:func:`valid_mask` for each frame of ``w`` ``(T, H, W, 2)``; returns ``(T, H, W)`` bool."""
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[3] != 2:
        raise ValueError(f"w must have shape (T, H, W, 2), got {w.shape}")
    return (
        np.stack([valid_mask(frame_w) for frame_w in w])
        if len(w)
        else np.zeros(w.shape[:3], dtype=bool)
    )


def warp_frame(
    frame: np.ndarray,
    w: np.ndarray,
    *,
    interpolation: str = "cubic",
    fill: np.ndarray | float | None = None,
) -> np.ndarray:
    """Warp one frame backward by ``w`` (``out[y, x] = frame[y + v, x + u]``).

    Parameters
    ----------
    frame
        ``(H, W)`` or ``(H, W, C)``; computed in float32 (OpenCV 5.0's cubic ``remap`` of
        float64 is wrong), returned in its own floating dtype.
    w
        Displacement ``(H, W, 2)`` in pixels.
    interpolation
        ``"nearest"``, ``"linear"`` or ``"cubic"``.
    fill
        Value for pixels whose source is outside the image: an array shaped like ``frame``
        (e.g. the reference), a number, or ``None`` to replicate the border.

    Returns
    -------
    numpy.ndarray
        Same shape as ``frame``; ``frame``'s dtype when floating, else float32.
    """
    frame = np.asarray(frame)
    out = np.empty(frame.shape, dtype=np.float32)
    _warp_into(frame, w, interpolation, fill, out)
    return out.astype(_float_dtype(frame.dtype), copy=False)


def _warp_into(
    frame: np.ndarray,
    w: np.ndarray,
    interpolation: str,
    fill: np.ndarray | float | None,
    out: np.ndarray,
) -> None:
    """:func:`warp_frame` of ``frame`` written into ``out``, a C-contiguous float32 array of
    ``frame``'s shape (a video's frame: no copy of each result)."""
    if interpolation not in _INTERPOLATION:
        raise ValueError(
            f"interpolation must be one of {sorted(_INTERPOLATION)}, got {interpolation!r}"
        )
    frame = frame.astype(np.float32, copy=False)
    w = np.asarray(w, dtype=np.float32)
    if frame.shape[:2] != w.shape[:2] or w.ndim != 3 or w.shape[2] != 2:
        raise ValueError(f"w must have shape {(*frame.shape[:2], 2)}, got {w.shape}")
    map_x, map_y = _maps(w)
    flag = _INTERPOLATION[interpolation]
    channels = frame[..., None] if frame.ndim == 2 else frame
    target = out[..., None] if out.ndim == 2 else out
    if channels.shape[2] <= 4:  # cv2.remap takes up to 4 channels at once: straight into out
        dst = target[..., 0] if target.shape[2] == 1 else target
        warped = cv2.remap(
            np.ascontiguousarray(channels),
            map_x,
            map_y,
            flag,
            dst=dst,
            borderMode=cv2.BORDER_REPLICATE,
        )
        if not np.shares_memory(warped, dst):  # OpenCV made its own array
            dst[...] = warped.reshape(dst.shape)
    else:
        for start in range(0, channels.shape[2], 4):
            part = np.ascontiguousarray(channels[..., start : start + 4])
            warped = cv2.remap(part, map_x, map_y, flag, borderMode=cv2.BORDER_REPLICATE)
            target[..., start : start + 4] = warped.reshape(part.shape)
    if fill is not None:
        # the pixels outside, by index: few (a border), found in one pass over the mask
        outside = np.flatnonzero(~_inside(map_x, map_y))
        pixels = target.reshape(-1, target.shape[2])
        if np.ndim(fill) == 0:
            pixels[outside] = np.float32(fill)
        else:
            fill_pixels = np.asarray(fill, dtype=np.float32).reshape(-1, target.shape[2])
            pixels[outside] = fill_pixels[outside]


def warp_video(
    video: np.ndarray,
    w: np.ndarray,
    *,
    interpolation: str = "cubic",
    fill: np.ndarray | float | None = None,
) -> np.ndarray:
    """:func:`warp_frame` for each frame: ``video`` ``(T, H, W[, C])``, ``w`` ``(T, H, W, 2)``.

    Returns ``video``'s shape, and its dtype when floating (else float32).
    """
    video = np.asarray(video)
    w = np.asarray(w)
    if len(video) != len(w):
        raise ValueError(f"video has {len(video)} frames but w has {len(w)}")
    out = np.empty(video.shape, dtype=np.float32)
    _warp_frames_into(video, w, interpolation, fill, out)
    return out.astype(_float_dtype(video.dtype), copy=False)


def _warp_frames_into(
    video: np.ndarray,
    w: np.ndarray,
    interpolation: str,
    fill: np.ndarray | float | None,
    out: np.ndarray,
) -> None:
    """:func:`warp_video` written into ``out``, a C-contiguous float32 array of ``video``'s
    shape (a block of a longer video's result: no copy of it)."""
    for t in range(len(video)):
        _warp_into(video[t], w[t], interpolation, fill, out[t])


def align_sequence(
    video: np.ndarray,
    w: np.ndarray,
    reference: np.ndarray | None = None,
    *,
    interpolation_method: str = "cubic",
    n_workers: int = 1,
) -> np.ndarray:
    """Warp every frame of ``video`` by one displacement field (pyflowreg's ``align_sequence``).

    What a motion session's stage 3 does to a corrected recording: it moves the recording onto
    the center recording's grid.

    Parameters
    ----------
    video
        ``(T, H, W)`` or ``(T, H, W, C)``.
    w
        One displacement ``(H, W, 2)`` for all frames, or one per frame ``(T, H, W, 2)``, in
        pixels (``out[t, y, x] = video[t, y + v, x + u]``).
    reference
        ``(H, W[, C])`` image whose values fill the pixels whose source is outside the view;
        ``None`` replicates the border.
    interpolation_method
        ``"nearest"``, ``"linear"`` or ``"cubic"``.
    n_workers
        Threads warping frames at once (OpenCV releases the GIL).

    Returns
    -------
    numpy.ndarray
        ``video``'s shape, and its dtype when floating (else float32).
    """
    video = np.asarray(video)
    w = np.asarray(w)
    if video.ndim not in (3, 4):
        raise ValueError(f"video must be (T, H, W) or (T, H, W, C), got shape {video.shape}")
    if w.ndim == 3:
        w = np.broadcast_to(w, (len(video), *w.shape))
    if w.shape != (len(video), *video.shape[1:3], 2):
        raise ValueError(
            f"w must be {(*video.shape[1:3], 2)} or {(len(video), *video.shape[1:3], 2)}, "
            f"got {w.shape}"
        )
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    out = np.empty(video.shape, dtype=_float_dtype(video.dtype))

    def one(t: int) -> None:
        out[t] = warp_frame(video[t], w[t], interpolation=interpolation_method, fill=reference)

    if n_workers == 1 or len(video) < 2:
        for t in range(len(video)):
            one(t)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            list(pool.map(one, range(len(video))))
    return out


def _uv(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    if u.ndim != 2 or u.shape != v.shape:
        raise ValueError(f"u and v must be (H, W) arrays of one shape, got {u.shape} and {v.shape}")
    return np.stack([u, v], axis=-1)


def backward_valid_mask(u: np.ndarray, v: np.ndarray, *, bounds: Bounds = "exact") -> np.ndarray:
    """Pixels whose source ``(y + v, x + u)`` lies inside the image, from ``u`` and ``v``.

    Parameters
    ----------
    u, v
        ``(H, W)`` horizontal (x) and vertical (y) displacements in pixels.
    bounds
        ``"exact"`` (default, as :func:`valid_mask` and the whole engine):
        ``0 <= x + u <= W - 1`` and ``0 <= y + v <= H - 1``, the samples interpolated from
        measured pixels only. ``"pyflowreg"``: its ``0 <= x + u < W``, ``0 <= y + v < H``,
        which also marks up to one more row and column valid at the far borders (see the
        module's notes).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool, True where the warped pixel is sampled from inside the field of view.

    Examples
    --------
    >>> import numpy as np
    >>> mask = backward_valid_mask(np.full((4, 6), 2.0), np.zeros((4, 6)))
    >>> mask[0].astype(int).tolist()  # the 2 right-most columns sample beyond x = 5
    [1, 1, 1, 1, 0, 0]
    >>> mask = backward_valid_mask(np.full((4, 6), 2.5), np.zeros((4, 6)))
    >>> mask[0].astype(int).tolist()  # x = 3 samples at 5.5, past the last pixel centre
    [1, 1, 1, 0, 0, 0]
    >>> backward_valid_mask(np.full((4, 6), 2.5), np.zeros((4, 6)), bounds="pyflowreg")[0]
    array([ True,  True,  True,  True, False, False])
    """
    return _inside(*_maps(_uv(u, v)), bounds)


def imregister_binary(
    mask: np.ndarray, u: np.ndarray, v: np.ndarray, *, bounds: Bounds = "exact"
) -> np.ndarray:
    """Warp a binary mask backward by ``(u, v)`` (nearest neighbour), False outside the view.

    ``out[y, x] = mask[round(y + v), round(x + u)] and backward_valid_mask(u, v)[y, x]`` (the
    MATLAB ``(imregister_wrapper_w(m, w, 'nearest') > 0.5) & idx_warp``).

    Parameters
    ----------
    mask
        ``(H, W)`` bool or 0/1 (any value > 0.5 counts as True).
    u, v
        ``(H, W)`` displacements in pixels.
    bounds
        The in-view test, as for :func:`backward_valid_mask`.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool.
    """
    w = _uv(u, v)
    mask = np.asarray(mask)
    if mask.shape != w.shape[:2]:
        raise ValueError(f"mask has shape {mask.shape}, u and v {w.shape[:2]}")
    warped = warp_frame((mask > 0.5).astype(np.float32), w, interpolation="nearest")
    return (warped > 0.5) & _inside(*_maps(w), bounds)


def compute_batch_valid_masks(w: np.ndarray, *, bounds: Bounds = "exact") -> np.ndarray:
    """:func:`valid_masks` encoded for an HDF5 mask file: ``(T, H, W)`` uint8, 255 valid, 0 not.

    The encoding is pyflowreg's; any value > 0 reads as valid. ``bounds`` as for
    :func:`backward_valid_mask`.
    """
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[3] != 2:
        raise ValueError(f"w must have shape (T, H, W, 2), got {w.shape}")
    out = np.zeros(w.shape[:3], dtype=np.uint8)
    for t in range(len(w)):
        out[t][_inside(*_maps(w[t]), bounds)] = 255
    return out
