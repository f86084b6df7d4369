"""numba image kernels used by the variational flow solver: blur, resize, warp, median.

Every kernel takes plain float32 arrays laid out ``(C, H, W)`` (channel first, so each channel
is one contiguous image) or ``(H, W)``, and is compiled serially: the caller parallelises over
frames. Kernels that only other kernels call have no Python wrapper (``no_cpython_wrapper``:
less to compile on a first run). Pixel coordinates follow OpenCV: pixel ``(y, x)`` has its
centre at ``(y, x)``, and resizing maps centres with ``x_src = (x_dst + 0.5) / scale - 0.5``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "blur_channels",
    "interleave_flow",
    "median5",
    "resize_channels",
    "resize_cubic",
    "resize_plane",
    "warp_frames",
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


@njit(cache=True, nogil=True, fastmath=True)
def blur_channels(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``(C, H, W)`` images with replicated borders.

    Rows are copied into an edge-padded buffer and both passes run over contiguous rows
    without index clamping, so the inner loops vectorise.
    """
    n_ch, height, width = images.shape
    if sigma <= 0.0:
        return images.copy()
    kernel = _gauss_kernel(sigma)
    radius = kernel.shape[0] // 2
    padded = np.empty(width + 2 * radius, dtype=np.float32)
    tmp = np.empty((height, width), dtype=np.float32)
    out = np.empty_like(images)
    for c in range(n_ch):
        for y in range(height):
            row = images[c, y]
            for x in range(width):  # element loops: see resize_channels
                padded[radius + x] = row[x]
            for k in range(radius):
                padded[k] = row[0]
                padded[radius + width + k] = row[width - 1]
            dst = tmp[y]
            dst[:] = 0.0
            for k in range(2 * radius + 1):
                wk = kernel[k]
                for x in range(width):
                    dst[x] += wk * padded[x + k]
        for y in range(height):
            dst = out[c, y]
            dst[:] = 0.0
            for k in range(-radius, radius + 1):
                wk = kernel[k + radius]
                src = tmp[min(max(y + k, 0), height - 1)]
                for x in range(width):
                    dst[x] += wk * src[x]
    return out


@njit(cache=True, fastmath=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _linear_taps(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps of a resize from ``n_src`` to ``n_dst`` samples: ``i0``, ``i1``, ``f``."""
    i0 = np.empty(n_dst, dtype=np.int64)
    i1 = np.empty(n_dst, dtype=np.int64)
    frac = np.empty(n_dst, dtype=np.float32)
    step = n_src / n_dst
    for d in range(n_dst):
        pos = min(max((d + 0.5) * step - 0.5, 0.0), n_src - 1.0)
        lo = min(int(pos), n_src - 2) if n_src > 1 else 0
        i0[d] = lo
        i1[d] = min(lo + 1, n_src - 1)
        frac[d] = np.float32(pos - lo)
    return i0, i1, frac


@njit(cache=True, fastmath=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _cubic_taps(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Bicubic taps of a resize from ``n_src`` to ``n_dst``: indices and weights ``(n_dst, 4)``
    (indices clamped to the image, as replicated borders)."""
    index = np.empty((n_dst, 4), dtype=np.int64)
    weights = np.empty((n_dst, 4), dtype=np.float64)
    step = n_src / n_dst
    for d in range(n_dst):
        pos = (d + 0.5) * step - 0.5
        lo = int(np.floor(pos))
        w = _cubic_weights(pos - lo)
        for i in range(4):
            index[d, i] = min(max(lo - 1 + i, 0), n_src - 1)
            weights[d, i] = w[i]
    return index, weights


@njit(cache=True, fastmath=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
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


@njit(cache=True, fastmath=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
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


@njit(cache=True, nogil=True, fastmath=True)
def resize_cubic(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of each ``(H, W)`` image of an ``(N, H, W)`` stack to ``(height, width)``
    (the pyramid levels, the flow's final upsampling).

    Separable, in single precision: each output row is interpolated along y from 4 source
    rows (contiguous, vectorised), then along x. Rows along y first: a shrinking pyramid level
    interpolates fewer rows along x (the scattered reads).
    """
    n_images, src_h, src_w = images.shape
    xi64, xw64 = _cubic_taps(src_w, width)
    # unsigned: numba tests a signed index for wraparound at every gather below
    xi = xi64.astype(np.uint64)
    yi, yw64 = _cubic_taps(src_h, height)
    xw = xw64.astype(np.float32)
    yw = yw64.astype(np.float32)
    row = np.empty(src_w, dtype=np.float32)
    out = np.empty((n_images, height, width), dtype=np.float32)
    for t in range(n_images):
        for y in range(height):
            r0 = images[t, yi[y, 0]]
            r1 = images[t, yi[y, 1]]
            r2 = images[t, yi[y, 2]]
            r3 = images[t, yi[y, 3]]
            w0, w1, w2, w3 = yw[y, 0], yw[y, 1], yw[y, 2], yw[y, 3]
            for x in range(src_w):
                row[x] = w0 * r0[x] + w1 * r1[x] + w2 * r2[x] + w3 * r3[x]
            dst = out[t, y]
            for x in range(width):
                dst[x] = (
                    xw[x, 0] * row[xi[x, 0]]
                    + xw[x, 1] * row[xi[x, 1]]
                    + xw[x, 2] * row[xi[x, 2]]
                    + xw[x, 3] * row[xi[x, 3]]
                )
    return out


@njit(cache=True, nogil=True, fastmath=True)
def resize_plane(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of one ``(H, W)`` image to ``(height, width)`` (no anti-aliasing)."""
    src_h, src_w = image.shape
    out = np.empty((height, width), dtype=np.float32)
    x0, x1, fx = _linear_taps(src_w, width)
    y0, y1, fy = _linear_taps(src_h, height)
    for y in range(height):
        top = image[y0[y]]
        bottom = image[y1[y]]
        wy = fy[y]
        dst = out[y]
        for x in range(width):
            a = top[x0[x]] * (1 - fx[x]) + top[x1[x]] * fx[x]
            b = bottom[x0[x]] * (1 - fx[x]) + bottom[x1[x]] * fx[x]
            dst[x] = a * (1 - wy) + b * wy
    return out


@njit(cache=True, nogil=True, fastmath=True)
def resize_channels(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``(C, H, W)`` images to ``(C, height, width)``."""
    n_ch = images.shape[0]
    out = np.empty((n_ch, height, width), dtype=np.float32)
    for c in range(n_ch):
        plane = resize_plane(images[c], height, width)
        # an element loop, not ``out[c] = plane``: an array-to-array slice assignment compiles
        # numba's shape-mismatch error formatting, seconds of a cold start per signature
        for y in range(height):
            for x in range(width):
                out[c, y, x] = plane[y, x]
    return out


@njit(cache=True, nogil=True, fastmath=True)
def warp_frames(
    moving: np.ndarray, fixed: np.ndarray, u: np.ndarray, v: np.ndarray, sx: float, sy: float
) -> np.ndarray:
    """Backward-warp each frame of ``moving`` (N, C, H, W) by its flow ``(u[t] * sx,
    v[t] * sy)`` (``u``, ``v``: (N, H, W)), bicubic sampling.

    Output pixel ``(y, x)`` of frame ``t`` takes ``moving[t]`` at ``(y + v * sy, x + u * sx)``;
    samples that fall outside the image take ``fixed``'s (C, H, W) value, so they add no
    residual to the data term. Each pixel's taps and weights serve all channels (the sum of
    :func:`_bicubic`, in its order).
    """
    n_frames, n_ch, height, width = moving.shape
    out = np.empty_like(moving)
    for t in range(n_frames):
        for y in range(height):
            for x in range(width):
                ys = y + v[t, y, x] * sy
                xs = x + u[t, y, x] * sx
                if not (0.0 <= ys <= height - 1.0 and 0.0 <= xs <= width - 1.0):
                    for c in range(n_ch):
                        out[t, c, y, x] = fixed[c, y, x]
                    continue
                y0 = int(np.floor(ys))
                x0 = int(np.floor(xs))
                wy = _cubic_weights(ys - y0)
                wx = _cubic_weights(xs - x0)
                r0 = max(y0 - 1, 0)
                r2 = min(y0 + 1, height - 1)
                r3 = min(y0 + 2, height - 1)
                # unsigned column indices: no wraparound test per tap (numba's, for a signed
                # index it cannot prove non-negative)
                c0 = np.uint64(max(x0 - 1, 0))
                c1 = np.uint64(x0)
                c2 = np.uint64(min(x0 + 1, width - 1))
                c3 = np.uint64(min(x0 + 2, width - 1))
                for c in range(n_ch):
                    image = moving[t, c]
                    acc = 0.0
                    for j in range(4):
                        yy = r0 if j == 0 else (y0 if j == 1 else (r2 if j == 2 else r3))
                        line = image[yy]
                        row = 0.0
                        row += wx[0] * line[c0]
                        row += wx[1] * line[c1]
                        row += wx[2] * line[c2]
                        row += wx[3] * line[c3]
                        acc += wy[j] * row
                    out[t, c, y, x] = np.float32(acc)
    return out


@njit(cache=True, nogil=True, fastmath=True)
def interleave_flow(u: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """``out[t, y, x] = (u[t, y, x], v[t, y, x])``: ``(N, H, W)`` planes into the ``(N, H, W,
    2)`` channel-last flow (numpy's strided copy of ``moveaxis`` took ~1.4 ns a value)."""
    n_frames, height, width = u.shape
    for t in range(n_frames):
        for y in range(height):
            u_row = u[t, y]
            v_row = v[t, y]
            dst = out[t, y]
            for x in range(width):
                dst[x, 0] = u_row[x]
                dst[x, 1] = v_row[x]


def _batcher_pairs(n: int) -> list[tuple[int, int]]:
    """Comparators ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort of ``n = 2**k`` wires."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def _median_network(n_in: int) -> tuple[np.ndarray, int]:
    """Selection network for the median of ``n_in`` values (odd), from Batcher's sorter.

    The sorter runs on the next power of two of wires, the extra ones holding +inf, which is
    resolved here (their comparators only relabel wires); comparators that cannot reach the
    median's wire are then dropped, and those with one live output keep only its ``min`` or
    ``max``. Returns ``(ops, slot)``: rows ``[a, b, kind]`` meaning ``buf[a], buf[b] =
    min, max`` (kind 0), ``buf[a] = min`` (1) or ``buf[b] = max`` (2), applied in order to a
    buffer of the ``n_in`` values; the median ends in ``buf[slot]``.
    """
    size = 1
    while size < n_in:
        size *= 2
    infinite = [w >= n_in for w in range(size)]
    slot = list(range(size))
    ops = []
    for i, j in _batcher_pairs(size):
        if infinite[j]:
            continue
        if infinite[i]:
            slot[i], slot[j] = slot[j], slot[i]
            infinite[i], infinite[j] = False, True
            continue
        ops.append((slot[i], slot[j]))
    target = slot[n_in // 2]
    live = {target}
    kept = []
    for a, b in reversed(ops):
        if a in live or b in live:
            kept.append((a, b, 0 if (a in live and b in live) else (1 if a in live else 2)))
            live |= {a, b}
    kept.reverse()
    return np.array(kept, dtype=np.int64), target


def _fresh_rows(ops: np.ndarray, n_in: int) -> tuple[np.ndarray, list[int]]:
    """Rewrite a selection network so that each comparator writes two rows it does not read.

    ``ops`` rows ``[a, b, kind]`` act in place on slots ``0 .. n_in - 1`` (see
    :func:`_median_network`); the result, rows ``[a, b, lo, hi]``, acts on a buffer of
    ``n_in + 2`` rows: ``buf[lo], buf[hi] = min, max(buf[a], buf[b])``, and the two rows read
    become the free ones. A comparator that overwrites the rows it reads is a conditional store
    to LLVM (``min(a, b)`` keeps ``a`` unless ``b < a``), vectorised as a masked store, which is
    slow; fresh rows make it a plain ``vminps`` / ``vmaxps``. Returns the rows and, for each
    slot, the buffer row that holds it at the end.
    """
    rows = list(range(n_in))
    free = [n_in, n_in + 1]
    out = []
    for a, b, _ in ops:
        lo, hi = free
        out.append((rows[a], rows[b], lo, hi))
        free = [rows[a], rows[b]]
        rows[a], rows[b] = lo, hi
    return np.array(out, dtype=np.int64), rows


#: 5x5 median: 113 compare-exchanges (89 full, 24 half; median5 runs all 113 full), each
#: writing two fresh rows of a 27-row buffer (:func:`_fresh_rows`).
_MEDIAN25_OPS, _MEDIAN25_SLOT = _median_network(25)
_MEDIAN25_ROWS, _slot_rows = _fresh_rows(_MEDIAN25_OPS, 25)
_MEDIAN25_ROW = _slot_rows[_MEDIAN25_SLOT]
#: Pixels filtered at once: the 27 buffer rows (14 KiB) stay in the L1 cache with the rows
#: they are copied from (256 was up to 1.5x slower on 200-300 px wide fields).
_MEDIAN_TILE = 128


@njit(cache=True, fastmath=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _mirror(i: int, n: int) -> int:
    if i < 0:
        i = -i
    if i >= n:
        i = 2 * n - 2 - i
    return min(max(i, 0), n - 1)


@njit(cache=True, nogil=True, fastmath=True)
def median5(fields: np.ndarray) -> np.ndarray:
    """5x5 median filter of each ``(H, W)`` field of an ``(N, H, W)`` stack, mirrored borders
    (removes flow outliers).

    A block of pixels at a time (up to :data:`_MEDIAN_TILE`: several rows of a narrow field,
    part of a row of a wide one): the 25 shifted copies of the block's windows, read from the
    field padded once with its mirrored borders, go into a buffer of rows, and a fixed
    selection network (min/max over contiguous rows, which vectorise) leaves each pixel's
    median in one buffer row. The result equals a sort-based median.
    """
    n_fields, height, width = fields.shape
    out = np.empty_like(fields)
    tile = min(width, _MEDIAN_TILE)
    rows = max(1, _MEDIAN_TILE // width)
    buf = np.empty((27, rows * tile), dtype=np.float32)
    padded = np.empty((height + 4, width + 4), dtype=np.float32)
    ops = _MEDIAN25_ROWS
    for t in range(n_fields):
        field = fields[t]
        for y in range(height + 4):
            row = field[_mirror(y - 2, height)]
            dst = padded[y]
            for x in range(width):  # element loops: see resize_channels
                dst[x + 2] = row[x]
            for k in range(2):
                dst[k] = row[_mirror(k - 2, width)]
                dst[width + 2 + k] = row[_mirror(width + k, width)]
        for y0 in range(0, height, rows):
            n_rows = min(rows, height - y0)
            for x0 in range(0, width, tile):
                n = min(tile, width - x0)
                for j in range(5):
                    for k in range(5):
                        for r in range(n_rows):
                            # views indexed by the loop counter alone: an index LLVM cannot
                            # prove non-negative keeps numba's wraparound test in the loop,
                            # which stops it vectorising (the copies were half the filter's time)
                            dst = buf[5 * j + k, r * n :]
                            src = padded[y0 + r + j, x0 + k :]
                            for x in range(n):
                                dst[x] = src[x]
                for r in range(ops.shape[0]):
                    # every comparator exchanges both ways, the network's half ones too (whose
                    # other output no later comparator reads, so the median is the same): one
                    # loop instead of three is less code to compile on a first run, for ~10 %
                    # more median work
                    first = buf[ops[r, 0]]
                    second = buf[ops[r, 1]]
                    lo = buf[ops[r, 2]]
                    hi = buf[ops[r, 3]]
                    for x in range(n_rows * n):
                        a = first[x]
                        b = second[x]
                        lo[x] = min(a, b)
                        hi[x] = max(a, b)
                for r in range(n_rows):
                    median = buf[_MEDIAN25_ROW, r * n :]
                    dst = out[t, y0 + r, x0:]
                    for x in range(n):
                        dst[x] = median[x]
    return out
