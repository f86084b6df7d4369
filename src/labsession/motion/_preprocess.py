"""Preprocessing before flow estimation: min-max normalisation and Gaussian smoothing."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["intensity_range", "preprocess", "preprocess_mix"]


def intensity_range(reference: np.ndarray, *, separate: bool) -> tuple[np.ndarray, np.ndarray]:
    """Low and high intensity ``(C,)`` of ``reference`` ``(H, W, C)``, per channel or jointly."""
    n_ch = reference.shape[-1]
    if separate:
        low = reference.reshape(-1, n_ch).min(axis=0)
        high = reference.reshape(-1, n_ch).max(axis=0)
    else:
        low = np.full(n_ch, reference.min())
        high = np.full(n_ch, reference.max())
    return low.astype(np.float32), high.astype(np.float32)


def preprocess(
    frames: np.ndarray,
    *,
    low: np.ndarray,
    high: np.ndarray,
    sigma: np.ndarray,
    temporal: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise by ``(low, high)`` and smooth each channel.

    Parameters
    ----------
    frames
        ``(T, H, W, C)`` or ``(H, W, C)`` float32.
    low, high
        ``(C,)`` intensity range mapped to [0, 1] (from the reference, so that all buffers share
        one scale).
    sigma
        ``(C, 3)``: ``[sx, sy, st]`` in pixels and frames.
    temporal
        Smooth along time too (``st``) when ``frames`` is a video.
    out
        C-contiguous float32 array of ``frames``' shape to write the result into (a block of
        a longer video's result, say); default: a new array.

    Returns
    -------
    numpy.ndarray
        Same shape, float32 (``out`` when given).
    """
    out = _output(out, frames.shape)
    scale = np.where(high - low > 0, high - low, 1.0).astype(np.float32)
    low = np.asarray(low)
    if np.result_type(frames, low, scale) == np.float32:
        # The same numbers as (frames - low) / scale, 5x faster: broadcast along the channel
        # axis, numpy's loops ran over the C values of one pixel at a time; here over whole
        # frames, with low and scale repeated per pixel, and in place (no temporaries).
        n_pixels = frames.shape[-3] * frames.shape[-2]
        flat = frames.reshape(-1, n_pixels * frames.shape[-1])
        out_flat = out.reshape(flat.shape)  # a view: out is C-contiguous
        np.subtract(flat, np.tile(low, n_pixels), dtype=np.float32, out=out_flat)
        np.divide(out_flat, np.tile(scale, n_pixels), out=out_flat)
    else:  # float64 frames: computed in float64 and rounded once, as before
        np.copyto(out, (frames - low) / scale, casting="same_kind")
    frames_view = out if out.ndim == 4 else out[None]
    for c in range(out.shape[-1]):
        sx, sy, st = sigma[c]
        if sx > 0 or sy > 0:
            ksize = (_ksize(sx), _ksize(sy))
            # plane by plane: OpenCV's blur of interleaved channels rounds differently
            for t in range(frames_view.shape[0]):
                plane = np.ascontiguousarray(frames_view[t, ..., c])
                frames_view[t, ..., c] = cv2.GaussianBlur(
                    plane,
                    ksize,
                    sigmaX=max(sx, 1e-6),
                    sigmaY=max(sy, 1e-6),
                    borderType=cv2.BORDER_REFLECT,
                )
        if temporal and out.ndim == 4 and int(4.0 * st + 0.5) >= 1 and len(out) > 1:
            out[..., c] = gaussian_filter1d(out[..., c], st, axis=0, mode="reflect", truncate=4.0)
    return out


def preprocess_mix(
    frames: np.ndarray,
    *,
    low: np.ndarray,
    high: np.ndarray,
    weight: np.ndarray,
    sigma: np.ndarray,
    temporal: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The weighted channel mix of :func:`preprocess`'s output, computed on the mix.

    Normalisation and smoothing are linear and, with one ``sigma`` row for all channels,
    commute with the weighted sum: this mixes the raw channels first (one affine map per
    pixel) and smooths one image per frame instead of ``C``. Equals
    ``preprocess(...) @ weight`` up to float rounding.

    Parameters
    ----------
    frames
        ``(T, H, W, C)`` or ``(H, W, C)``.
    low, high
        ``(C,)`` intensity range mapped to [0, 1].
    weight
        ``(C,)`` channel weights.
    sigma
        ``(C, 3)`` with identical rows (``[sx, sy, st]``).
    temporal
        Smooth along time too (``st``) when ``frames`` is a video.
    out
        C-contiguous float32 array of the result's shape to write it into, not overlapping
        ``frames``; default: a new array.

    Returns
    -------
    numpy.ndarray
        ``(T, H, W, 1)`` or ``(H, W, 1)`` float32 (``out`` when given).

    Raises
    ------
    ValueError
        If the channels have different ``sigma`` rows, or ``out`` is not as described.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if not np.all(sigma == sigma[:1]):
        raise ValueError("preprocess_mix needs the same sigma for every channel")
    scale = np.where(high - low > 0, high - low, 1.0).astype(np.float64)
    gain = np.asarray(weight, dtype=np.float64) / scale
    offset = -float(np.sum(gain * np.asarray(low, dtype=np.float64)))
    video = frames if frames.ndim == 4 else frames[None]
    n_ch = video.shape[-1]
    matrix = np.append(gain, offset)[None]  # (1, C + 1): cv2.transform's affine map
    sx, sy, st = sigma[0]
    ksize = (_ksize(sx), _ksize(sy))
    result = _output(out, (*frames.shape[:-1], 1))
    if out is not None and np.may_share_memory(out, frames):
        # each frame is written before the later ones are read
        raise ValueError("out must not overlap frames")
    out = result.reshape(video.shape[:3])  # a view: result is C-contiguous
    for t in range(video.shape[0]):
        frame = np.ascontiguousarray(video[t], dtype=np.float32)
        if n_ch <= 4:
            mixed = cv2.transform(frame, matrix).reshape(out.shape[1:])
        else:
            mixed = (frame @ gain.astype(np.float32) + np.float32(offset)).astype(np.float32)
        if sx > 0 or sy > 0:
            mixed = cv2.GaussianBlur(
                mixed,
                ksize,
                sigmaX=max(sx, 1e-6),
                sigmaY=max(sy, 1e-6),
                borderType=cv2.BORDER_REFLECT,
            )
        out[t] = mixed
    if temporal and frames.ndim == 4 and int(4.0 * st + 0.5) >= 1 and len(out) > 1:
        out[...] = gaussian_filter1d(out, st, axis=0, mode="reflect", truncate=4.0)
    return result


def _output(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``out`` checked to be a C-contiguous float32 array of ``shape``, or a new one."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous float32 array of shape {shape}, not {out.dtype} "
            f"{out.shape}" + ("" if out.flags.c_contiguous else " (not contiguous)")
        )
    return out


def _ksize(sigma: float) -> int:
    """Odd kernel size covering 4 sigma (scipy's default truncation)."""
    return 2 * int(4.0 * sigma + 0.5) + 1 if sigma > 0 else 1
