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
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

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
    without index clamping, so the inner loops vectorise. With 5 taps (the pyramid's
    ``sigma`` at ``eta = 0.8``) each output sums its taps in registers, in the order the
    general loop adds them to memory (the same numbers, ~1.3x faster).
    """
    n_ch, height, width = images.shape
    if sigma <= 0.0:
        return images.copy()
    kernel = _gauss_kernel(sigma)
    radius = kernel.shape[0] // 2
    padded = np.empty(width + 2 * radius, dtype=np.float32)
    tmp = np.empty((height, width), dtype=np.float32)
    out = np.empty_like(images)
    five = kernel.shape[0] == 5
    w0 = w1 = w2 = w3 = w4 = np.float32(0.0)
    if five:
        w0, w1, w2, w3, w4 = kernel[0], kernel[1], kernel[2], kernel[3], kernel[4]
    for c in range(n_ch):
        for y in range(height):
            row = images[c, y]
            for x in range(width):  # element loops: see resize_channels
                padded[radius + x] = row[x]
            for k in range(radius):
                padded[k] = row[0]
                padded[radius + width + k] = row[width - 1]
            dst = tmp[y]
            if five:
                for x in range(width):
                    total = np.float32(0.0) + w0 * padded[x]
                    total = total + w1 * padded[x + 1]
                    total = total + w2 * padded[x + 2]
                    total = total + w3 * padded[x + 3]
                    dst[x] = total + w4 * padded[x + 4]
                continue
            dst[:] = 0.0
            for k in range(2 * radius + 1):
                wk = kernel[k]
                for x in range(width):
                    dst[x] += wk * padded[x + k]
        for y in range(height):
            dst = out[c, y]
            if five:
                r0 = tmp[max(y - 2, 0)]
                r1 = tmp[max(y - 1, 0)]
                r2 = tmp[y]
                r3 = tmp[min(y + 1, height - 1)]
                r4 = tmp[min(y + 2, height - 1)]
                for x in range(width):
                    total = np.float32(0.0) + w0 * r0[x]
                    total = total + w1 * r1[x]
                    total = total + w2 * r2[x]
                    total = total + w3 * r3[x]
                    dst[x] = total + w4 * r4[x]
                continue
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


# 5x5 median as separable sorting networks (A. Adams, "Fast median filters using separable sorting
# networks", ACM Trans. Graph. 40(4), 2021): each column of 5 is sorted once for the 5 windows that
# hold it, each two neighbouring sorted columns are merged once for the 2 windows that hold both,
# and each window then selects its median from two merged pairs and one sorted column: 90
# min/max per pixel instead of the 202 of a median-of-25 network. The tables are comparators
# ``(a, b)`` (``a`` gets the min, ``b`` the max) or ``(a, b, kind)`` (kind 1 keeps only the min,
# 2 only the max); tests/motion/test_fast_paths.py checks them on every 0-1 input.

#: Sorts 5 values (Knuth, TAOCP vol. 3, 5.3.4, 9 comparators).
_SORT5 = ((0, 1), (3, 4), (2, 4), (2, 3), (0, 3), (0, 2), (1, 4), (1, 3), (1, 2))
#: Merges two sorted columns (wires 0-4 and 5-9) into the wires :data:`_MERGE55_OUT`, smallest
#: first (Batcher's odd-even merge of 8 + 8 with the padding's comparators dropped).
_MERGE55 = ((0, 5), (1, 6), (2, 7), (3, 8), (4, 9), (4, 5), (2, 4), (3, 6), (7, 5), (1, 2), (3, 4))
_MERGE55 += ((6, 7), (8, 5))
_MERGE55_OUT = (0, 1, 2, 3, 4, 6, 7, 8, 5, 9)
#: Ranks 7 to 12 of the 20 values of two merged pairs (wires 0-9 and 10-19), in the wires
#: :data:`_RANKS7_12_OUT` (Batcher's merge, pruned to what these ranks need).
_RANKS7_12 = (
    (0, 10, 2), (1, 11, 2), (2, 12, 2), (3, 13, 2), (4, 14), (5, 15), (6, 16, 1), (7, 17, 1),
    (8, 18, 1), (9, 19, 1), (8, 10), (9, 11), (4, 8, 2), (5, 9, 2), (6, 12), (7, 13), (14, 10, 1),
    (15, 11, 1), (6, 8, 2), (7, 9), (12, 14), (13, 15, 1), (7, 8), (9, 12), (13, 14),
)  # fmt: skip
_RANKS7_12_OUT = (7, 8, 9, 12, 13, 14)
#: Median of a window from its merged pairs (wires 0-19, ranks ``q``) and its fifth sorted column
#: (wires 20-24, ``c``), left in wire :data:`_WINDOW_OUT`: the 13th smallest of the 25 is
#: ``min(q[12], max(c[0], q[11]), ..., max(c[4], q[7]))``: the ``i`` smallest of ``c`` with the
#: ``13 - i`` smallest of ``q`` are 13 values, so their largest is at least the 13th smallest, and
#: equals it for one ``i``.
_WINDOW = _RANKS7_12 + tuple((20 + i, _RANKS7_12_OUT[4 - i], 2) for i in range(5))
_WINDOW += tuple((_RANKS7_12_OUT[5], _RANKS7_12_OUT[4 - i], 1) for i in range(5))
_WINDOW_OUT = _RANKS7_12_OUT[5]
#: Output pixels filtered at once (a row's tile, or whole rows of a narrow field): the buffer
#: (16 rows of :data:`_MEDIAN_STRIDE`, 17 KiB) stays in the L1 cache with the rows it reads.
_MEDIAN_TILE = 256
#: Buffer row length: a tile, its 4 border columns and a vector's overrun.
_MEDIAN_STRIDE = _MEDIAN_TILE + 16


def _network_stage(ops: tuple, loads: tuple, stores: tuple) -> object:
    """numba intrinsic ``stage(src, base, stride, buf, x)`` running a min/max network on one pixel.

    Wire ``i`` loads ``src[base + x + row * stride + shift]`` for ``(row, shift) = loads[i]``, the
    comparators ``ops`` run on the wires, and ``buf[x + row * _MEDIAN_STRIDE] = wire`` for each
    ``(wire, row)`` of ``stores``; ``src`` and ``buf`` are 1-d float32 arrays. The network is
    emitted as LLVM IR from the table when the calling kernel compiles (and is cached with it):
    written as numba code, its ~150 ``min``/``max`` and ~60 indexings took a second more to
    compile. Indices are not checked. A loop over ``x`` vectorises (``select`` of an ordered
    ``<`` is ``vminps`` / ``vmaxps``).
    """

    @intrinsic
    def stage(typingctx, src, base, stride, buf, x):
        def codegen(context, builder, signature, args):
            intp = context.get_value_type(types.intp)
            source = context.make_array(signature.args[0])(context, builder, args[0])
            target = context.make_array(signature.args[3])(context, builder, args[3])
            base_, stride_, x_ = (
                context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 2, 4)
            )
            start = builder.add(base_, x_)
            wires = []
            for row, shift in loads:
                offset = builder.add(builder.mul(stride_, ir.Constant(intp, row)), start)
                index = builder.add(offset, ir.Constant(intp, shift))
                wires.append(builder.load(builder.gep(source.data, [index], inbounds=True)))
            for op in ops:
                a, b, kind = op if len(op) == 3 else (*op, 0)
                lo, hi = wires[a], wires[b]
                less = builder.fcmp_ordered("<", lo, hi)
                if kind != 2:
                    wires[a] = builder.select(less, lo, hi)
                if kind != 1:
                    wires[b] = builder.select(less, hi, lo)
            for wire, row in stores:
                index = builder.add(x_, ir.Constant(intp, row * _MEDIAN_STRIDE))
                builder.store(wires[wire], builder.gep(target.data, [index], inbounds=True))
            return context.get_dummy_value()

        return types.void(src, base, stride, buf, x), codegen

    return stage


# median5's buffer rows: 0 the medians, 1-10 the merged pairs, 11-15 the sorted columns. Each
# loop writes rows below those it reads, so LLVM sees no store that a later load could need to
# forward from (which it answers with half-width vectors).
_sort_columns = _network_stage(
    _SORT5, tuple((k, 0) for k in range(5)), tuple((k, 11 + k) for k in range(5))
)
_merge_pairs = _network_stage(
    _MERGE55,
    tuple((11 + k, shift) for shift in (0, 1) for k in range(5)),
    tuple((w, 1 + k) for k, w in enumerate(_MERGE55_OUT)),
)
_select_median = _network_stage(
    _WINDOW,
    tuple((1 + k, shift) for shift in (0, 2) for k in range(10))
    + tuple((11 + k, 4) for k in range(5)),
    ((_WINDOW_OUT, 0),),
)


@njit(cache=True, fastmath=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _mirror(i: int, n: int) -> int:
    # index ``i`` of a line of ``n`` mirrored without repeating the edge (numpy's "reflect",
    # OpenCV's BORDER_REFLECT_101), reflected again as often as a short line needs
    if n == 1:
        return 0
    i = abs(i) % (2 * n - 2)
    return i if i < n else 2 * n - 2 - i


@njit(cache=True, nogil=True, fastmath=True)
def median5(fields: np.ndarray) -> np.ndarray:
    """5x5 median filter of each ``(H, W)`` field of an ``(N, H, W)`` stack, mirrored borders
    (removes flow outliers).

    The field is padded once with its mirrored borders; then a block of output pixels at a time
    (up to :data:`_MEDIAN_TILE`: several rows of a narrow field, part of a row of a wide one,
    handled as one run of the padded field's memory) goes through three vectorised loops: sort
    the columns of 5, merge neighbouring sorted columns, select each window's median (see
    :data:`_WINDOW`). Each loop runs whole vectors of 8: the few extra pixels it computes (from
    whatever lies past the block, hence the padding's spare rows) are never read back. The result
    is one of each window's values, the one a sort-based median gives.
    """
    n_fields, height, width = fields.shape
    out = np.empty_like(fields)
    span = width + 4
    padded = np.empty((height + 6, span), dtype=np.float32)  # 2 spare rows for the overrun
    flat = padded.reshape(-1)
    buf = np.empty(16 * _MEDIAN_STRIDE, dtype=np.float32)
    tile = -(-width // -(-width // _MEDIAN_TILE))  # equal tiles of a wide row
    rows = max(1, _MEDIAN_TILE // span)
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
                m = (n_rows - 1) * span + n  # flat positions, first window to last
                base = y0 * span + x0
                for x in range((m + 11) // 8 * 8):
                    _sort_columns(flat, base, span, buf, x)
                for x in range((m + 9) // 8 * 8):
                    _merge_pairs(buf, 0, _MEDIAN_STRIDE, buf, x)
                for x in range((m + 7) // 8 * 8):
                    _select_median(buf, 0, _MEDIAN_STRIDE, buf, x)
                for r in range(n_rows):
                    src = buf[r * span :]
                    dst = out[t, y0 + r, x0:]
                    for x in range(n):
                        dst[x] = src[x]
    return out
