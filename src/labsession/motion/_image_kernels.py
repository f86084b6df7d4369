"""numba image kernels used by the variational flow solver: blur, resize, warp, median.

Every kernel takes plain float32 arrays laid out ``(C, H, W)`` (channel first, so each channel
is one contiguous image) or ``(H, W)``, and is compiled serially: the caller parallelises over
frames. Pixel coordinates follow OpenCV: pixel ``(y, x)`` has its centre at ``(y, x)``, and
resizing maps centres with ``x_src = (x_dst + 0.5) / scale - 0.5``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "blur_channels",
    "median5",
    "resize_channels",
    "resize_plane",
    "resize_plane_cubic",
    "warp_channels",
]


@njit(cache=True, fastmath=True)
def _gauss_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * sigma))
    kernel = np.empty(2 * radius + 1, dtype=np.float32)
    total = 0.0
    for k in range(-radius, radius + 1):
        value = math.exp(-0.5 * (k / sigma) ** 2)
        kernel[k + radius] = value
        total += value
    for k in range(2 * radius + 1):
        kernel[k] = kernel[k] / total
    return kernel


@njit(cache=True, fastmath=True)
def blur_channels(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``(C, H, W)`` images with replicated borders."""
    n_ch, height, width = images.shape
    if sigma <= 0.0:
        return images.copy()
    kernel = _gauss_kernel(sigma)
    radius = kernel.shape[0] // 2
    tmp = np.empty((height, width), dtype=np.float32)
    out = np.empty_like(images)
    for c in range(n_ch):
        for y in range(height):
            for x in range(width):
                acc = np.float32(0.0)
                for k in range(-radius, radius + 1):
                    xx = min(max(x + k, 0), width - 1)
                    acc += kernel[k + radius] * images[c, y, xx]
                tmp[y, x] = acc
        for y in range(height):
            for x in range(width):
                acc = np.float32(0.0)
                for k in range(-radius, radius + 1):
                    yy = min(max(y + k, 0), height - 1)
                    acc += kernel[k + radius] * tmp[yy, x]
                out[c, y, x] = acc
    return out


@njit(cache=True, fastmath=True)
def _bilinear(image: np.ndarray, y: float, x: float) -> np.float32:
    height, width = image.shape
    y = min(max(y, 0.0), height - 1.0)
    x = min(max(x, 0.0), width - 1.0)
    y0 = min(int(y), height - 2) if height > 1 else 0
    x0 = min(int(x), width - 2) if width > 1 else 0
    y1 = min(y0 + 1, height - 1)
    x1 = min(x0 + 1, width - 1)
    fy = np.float32(y - y0)
    fx = np.float32(x - x0)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return np.float32(top * (1 - fy) + bottom * fy)


@njit(cache=True, fastmath=True)
def _cubic_weights(t: float) -> tuple[float, float, float, float]:
    # Keys' cubic convolution with a = -0.75 (as OpenCV's INTER_CUBIC)
    a = -0.75
    t1 = t + 1.0
    t2 = 1.0 - t
    t3 = 2.0 - t
    w0 = ((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a
    w1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    w2 = ((a + 2.0) * t2 - (a + 3.0)) * t2 * t2 + 1.0
    w3 = ((a * t3 - 5.0 * a) * t3 + 8.0 * a) * t3 - 4.0 * a
    return w0, w1, w2, w3


@njit(cache=True, fastmath=True)
def _bicubic(image: np.ndarray, y: float, x: float) -> np.float32:
    height, width = image.shape
    y0 = int(np.floor(y))
    x0 = int(np.floor(x))
    wy = _cubic_weights(y - y0)
    wx = _cubic_weights(x - x0)
    acc = 0.0
    for j in range(4):
        yy = min(max(y0 - 1 + j, 0), height - 1)
        row = 0.0
        for i in range(4):
            xx = min(max(x0 - 1 + i, 0), width - 1)
            row += wx[i] * image[yy, xx]
        acc += wy[j] * row
    return np.float32(acc)


@njit(cache=True, fastmath=True)
def resize_plane_cubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of one ``(H, W)`` image to ``(height, width)`` (for flow upsampling)."""
    src_h, src_w = image.shape
    out = np.empty((height, width), dtype=np.float32)
    sy = src_h / height
    sx = src_w / width
    for y in range(height):
        ys = (y + 0.5) * sy - 0.5
        for x in range(width):
            out[y, x] = _bicubic(image, ys, (x + 0.5) * sx - 0.5)
    return out


@njit(cache=True, fastmath=True)
def resize_plane(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of one ``(H, W)`` image to ``(height, width)`` (no anti-aliasing)."""
    src_h, src_w = image.shape
    out = np.empty((height, width), dtype=np.float32)
    sy = src_h / height
    sx = src_w / width
    for y in range(height):
        ys = (y + 0.5) * sy - 0.5
        for x in range(width):
            out[y, x] = _bilinear(image, ys, (x + 0.5) * sx - 0.5)
    return out


@njit(cache=True, fastmath=True)
def resize_channels(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``(C, H, W)`` images to ``(C, height, width)``."""
    n_ch = images.shape[0]
    out = np.empty((n_ch, height, width), dtype=np.float32)
    for c in range(n_ch):
        out[c] = resize_plane(images[c], height, width)
    return out


@njit(cache=True, fastmath=True)
def warp_channels(
    moving: np.ndarray, fixed: np.ndarray, u: np.ndarray, v: np.ndarray, sx: float, sy: float
) -> np.ndarray:
    """Backward-warp ``moving`` (C, H, W) by the flow ``(u * sx, v * sy)``, bicubic sampling.

    Output pixel ``(y, x)`` takes ``moving`` at ``(y + v * sy, x + u * sx)``; samples that
    fall outside the image take ``fixed``'s value, so they add no residual to the data term.
    """
    n_ch, height, width = moving.shape
    out = np.empty_like(moving)
    for y in range(height):
        for x in range(width):
            ys = y + v[y, x] * sy
            xs = x + u[y, x] * sx
            inside = 0.0 <= ys <= height - 1.0 and 0.0 <= xs <= width - 1.0
            for c in range(n_ch):
                if inside:
                    out[c, y, x] = _bicubic(moving[c], ys, xs)
                else:
                    out[c, y, x] = fixed[c, y, x]
    return out


@njit(cache=True, fastmath=True)
def _select(values: np.ndarray, k: int) -> np.float32:
    """k-th smallest of ``values`` (reordered in place), by Hoare's quickselect."""
    lo = 0
    hi = values.shape[0] - 1
    while lo < hi:
        pivot = values[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                tmp = values[i]
                values[i] = values[j]
                values[j] = tmp
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return values[k]


@njit(cache=True, fastmath=True)
def median5(field: np.ndarray) -> np.ndarray:
    """5x5 median filter of an ``(H, W)`` field with mirrored borders (removes flow outliers)."""
    height, width = field.shape
    out = np.empty_like(field)
    window = np.empty(25, dtype=np.float32)
    for y in range(height):
        for x in range(width):
            n = 0
            for dy in range(-2, 3):
                yy = y + dy
                if yy < 0:
                    yy = -yy
                if yy >= height:
                    yy = 2 * height - 2 - yy
                yy = min(max(yy, 0), height - 1)
                for dx in range(-2, 3):
                    xx = x + dx
                    if xx < 0:
                        xx = -xx
                    if xx >= width:
                        xx = 2 * width - 2 - xx
                    xx = min(max(xx, 0), width - 1)
                    window[n] = field[yy, xx]
                    n += 1
            out[y, x] = _select(window, 12)
    return out
