"""Preprocessing before flow estimation: min-max normalisation and Gaussian smoothing."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["intensity_range", "preprocess"]


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

    Returns
    -------
    numpy.ndarray
        Same shape, float32.
    """
    scale = np.where(high - low > 0, high - low, 1.0).astype(np.float32)
    out = (frames - low) / scale
    out = out.astype(np.float32, copy=False)
    frames_view = out if out.ndim == 4 else out[None]
    for c in range(out.shape[-1]):
        sx, sy, st = sigma[c]
        if sx > 0 or sy > 0:
            ksize = (_ksize(sx), _ksize(sy))
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


def _ksize(sigma: float) -> int:
    """Odd kernel size covering 4 sigma (scipy's default truncation)."""
    return 2 * int(4.0 * sigma + 0.5) + 1 if sigma > 0 else 1
