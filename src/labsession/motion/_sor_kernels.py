"""numba SOR solver of the ``flowreg`` backend: one pyramid level's flow increments.

At each level the increment ``(du, dv)`` minimises the linearised energy of
:mod:`labsession.motion._flowreg_kernels` (data term from the motion tensors, smoothness of the
total flow). The Euler-Lagrange equations are solved by successive over-relaxation (SOR,
Gauss-Seidel order: row by row, left to right) with the non-linearities (robust data weights,
smoothness diffusivity) frozen for ``update_lag`` sweeps.

Layout for speed, the arithmetic of each pixel unchanged (the flows are those of the plain
row-by-row sweep, bit for bit; ``tests/motion/test_sor_sweep.py`` checks it):

- Skewed wavefront, 8 rows at once: the rows of a block of 8 advance together, each
  :data:`_SLAG` columns behind the row above. Pixel ``(y, x)`` then reads its left and upper
  neighbours after their update and its right and lower ones before it, as in row order, and
  the 8 pixels of a step are independent: the step is one vector operation (AVX: 8 float32).
- One array per block of rows, one record per wavefront step: the step's ``du`` and ``dv``
  lanes (with the row above and the row below) and the 13 frozen coefficients of its 8 pixels
  (relaxation factors, channel sums of the data term, neighbour weights, neighbour sums of the
  fixed flow), lane by lane, so a step reads contiguous memory and LLVM sees, from constant
  offsets in one array, that a step's stores do not touch what it reads.
- A refresh works a row at a time: the robust data weights' squared residuals and the channel
  sums are loops over contiguous rows, which vectorise, and so does the power function
  (:func:`_power`), formerly a scalar call of the C library's ``pow`` per pixel and channel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from labsession.motion._flowreg_kernels import _grad

__all__ = ["solve_level"]

_EPS_PSI = 1e-5
_OMEGA = 1.95
# fdlibm's log (s = f / (2 + f) and a polynomial in s^2) and a Taylor series for exp on
# [-ln2/2, ln2/2], for _power
_LOG_OFFSET = 0x3FE6A09E667F3BCD  # bits of sqrt(1/2) (rounded): mantissas in [sqrt(1/2), sqrt(2))
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
_INV_LN2 = 1.44269504088896338700e00
_ROUND_SHIFT = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer
_ROUND_SHIFT_BITS = 0x4338000000000000
_EXPONENT_BIAS = 4503599627371520.0  # 2**52 + 1024: as a float, 2**52 + 1024 + k has k's bits
_EXPONENT_BIAS_BITS = 0x4330000000000400
#: Coefficients per pixel: ``omega / den`` (u, v), ``1 - omega`` (u, v; 0 and 1 where ``den``
#: is 0), the fixed flow's neighbour sums (u, v), data-term sums J12, J13, J23, neighbour
#: weights right, up, down, left.
_PACKED = 13
#: Rows swept at once, one per SIMD lane (8 float32: one AVX register).
_LANES = 8
#: Values per wavefront step of ``du`` (and of ``dv``): the row above, the 8 rows, the row below.
_STRIDE = _LANES + 2
#: A step's record: ``du`` lanes, ``dv`` lanes, then coefficient ``f`` of lane ``i`` at
#: ``_COEF + f * _LANES + i``.
_COEF = 2 * _STRIDE
_RECORD = _COEF + _PACKED * _LANES
#: Steps a row of a block trails the row above. 1 keeps row order; 2 keeps a step from reading,
#: one lane over, what the step before it has just stored (a store-forwarding stall).
_SLAG = 2


@njit(
    cache=True,
    fastmath={"contract"},
    error_model="numpy",
    no_cpython_wrapper=True,
    no_cfunc_wrapper=True,
)
def _power(base: np.ndarray, exponent: float, out: np.ndarray, scratch: np.ndarray) -> None:
    """``out = base ** exponent`` (float64, ``(n,)`` each), in loops that vectorise.

    The power of the robust data weights was a scalar call of the C library's ``pow`` per
    pixel and channel, most of a refresh's time. Here ``exp(exponent * log(base))`` with
    fdlibm's log and a degree-13 Taylor series of exp after the usual range reductions: within
    about ``2 + |exponent * ln(base)|`` units in the last place of ``pow`` (double precision;
    at most 32 for the solver's bases and exponents), so the float32 coefficients built from it
    are almost always the same numbers. Bases outside
    ``(1e-300, 1e300)`` (none in the solver, whose bases are ``>= 1e-5``), infinities and NaN
    go to ``pow``. Compiled without fastmath (said explicitly: a callee inherits the flag from a
    fastmath caller otherwise), which would undo the range reductions, and
    with numpy's error model (no division-by-zero test in the loop). ``scratch``: int64
    ``(n,)``.
    """
    n = base.shape[0]
    ibase = base.view(np.int64)
    fscratch = scratch.view(np.float64)
    unusual = 0
    # Two loops, log then exp, with the same arithmetic as one: each pass's dependency chain
    # (division, polynomials) is half as long, so the CPU overlaps more iterations (~15 %
    # faster, the same bits). The int/float reinterpretations go through scratch.
    for i in range(n):
        bits = ibase[i]
        k_bits = (bits - _LOG_OFFSET) >> 52
        scratch[i] = k_bits + _EXPONENT_BIAS_BITS  # k + 1024 + 2**52 as a float64
        k = fscratch[i] - _EXPONENT_BIAS
        scratch[i] = bits - (k_bits << 52)  # the mantissa, in [sqrt(1/2), sqrt(2))
        f = fscratch[i] - 1.0
        half_f2 = 0.5 * f * f
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        odd = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6])))
        even = w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
        log_base = k * _LN2_HI - ((half_f2 - (s * (half_f2 + odd + even) + k * _LN2_LO)) - f)
        out[i] = exponent * log_base
        b = base[i]
        unusual += not (1e-300 < b < 1e300)
    for i in range(n):
        e = out[i]
        rounded = e * _INV_LN2 + _ROUND_SHIFT
        k = rounded - _ROUND_SHIFT
        r = (e - k * _LN2_HI) - k * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        fscratch[i] = rounded  # its low bits: k; 2 ** k as float64 bits
        scratch[i] = (scratch[i] - _ROUND_SHIFT_BITS + 1023) << 52
        out[i] = p * fscratch[i]
    if unusual:
        for i in range(n):
            b = base[i]
            if not (1e-300 < b < 1e300):
                out[i] = b**exponent


@njit(cache=True, fastmath=True, inline="always")
def _smoothness_diffusivity(
    u: np.ndarray, v: np.ndarray, a_smooth: float, hx: float, hy: float, out: np.ndarray
) -> None:
    """``out = a * (|grad u|^2 + |grad v|^2 + eps)^(a - 1)`` for the current total flow."""
    ux, uy = _grad(u, hx, hy)
    vx, vy = _grad(v, hx, hy)
    height, width = u.shape
    for y in range(height):
        for x in range(width):
            s2 = ux[y, x] ** 2 + uy[y, x] ** 2 + vx[y, x] ** 2 + vy[y, x] ** 2
            out[y, x] = a_smooth * (s2 + _EPS_PSI) ** (a_smooth - 1.0)


@njit(cache=True, fastmath=True, inline="always")
def _smoothness_coefficients(
    diffusivity: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    ax: float,
    ay: float,
    links: np.ndarray,
    base: np.ndarray,
) -> None:
    """Neighbour weights ``links`` (4, h, w: left, right, up, down; 0 across the border) and
    ``base`` (3, h, w): their sum and ``sum_n g_n (u_n - u)``, ``sum_n g_n (v_n - v)``."""
    height, width = u.shape
    links[:] = 0.0
    for y in range(height):
        for x in range(width):
            d0 = diffusivity[y, x]
            if x > 0:
                links[0, y, x] = 0.5 * (d0 + diffusivity[y, x - 1]) * ax
            if x < width - 1:
                links[1, y, x] = 0.5 * (d0 + diffusivity[y, x + 1]) * ax
            if y > 0:
                links[2, y, x] = 0.5 * (d0 + diffusivity[y - 1, x]) * ay
            if y < height - 1:
                links[3, y, x] = 0.5 * (d0 + diffusivity[y + 1, x]) * ay
            xl = max(x - 1, 0)
            xr = min(x + 1, width - 1)
            yu = max(y - 1, 0)
            yd = min(y + 1, height - 1)
            gl = links[0, y, x]
            gr = links[1, y, x]
            gu = links[2, y, x]
            gd = links[3, y, x]
            base[0, y, x] = gl + gr + gu + gd
            base[1, y, x] = (
                gl * (u[y, xl] - u[y, x])
                + gr * (u[y, xr] - u[y, x])
                + gu * (u[yu, x] - u[y, x])
                + gd * (u[yd, x] - u[y, x])
            )
            base[2, y, x] = (
                gl * (v[y, xl] - v[y, x])
                + gr * (v[y, xr] - v[y, x])
                + gu * (v[yu, x] - v[y, x])
                + gd * (v[yd, x] - v[y, x])
            )


@njit(cache=True, fastmath=True, inline="always")
def _pack_coefficients(
    tensor: np.ndarray,
    weight: np.ndarray,
    du: np.ndarray,
    dv: np.ndarray,
    a_data: float,
    robust: bool,
    links: np.ndarray,
    base: np.ndarray,
    packed: np.ndarray,
    data_only: bool,
) -> None:
    """Refresh the coefficients in ``packed`` (see :func:`solve_level`), a row at a time; with
    ``data_only``, those that depend on the data term only (the smoothness ones unchanged).

    ``tensor`` (6, C, h, w) and ``weight`` (C, h, w) give the channel sums ``sum_c weight_c
    psi_c J_c``, where ``psi_c`` is the robust data weight at the current increment (``du``,
    ``dv`` padded by one pixel; 1 with ``robust`` false, the first sweeps of a level); with
    ``links`` and ``base`` (:func:`_smoothness_coefficients`) they give the SOR factors
    ``omega / den`` and ``1 - omega`` (0 and 1 where ``den`` is 0: not updated).
    """
    n_ch, height, width = tensor.shape[1], tensor.shape[2], tensor.shape[3]
    coef = np.empty((5, width), dtype=np.float32)
    s2 = np.empty(width, dtype=np.float64)
    psi = np.empty(width, dtype=np.float64)
    scratch = np.empty(width, dtype=np.int64)
    factors = np.empty((4, width), dtype=np.float32)
    for y in range(height):
        py = y + 1
        coef[:] = 0.0
        for c in range(n_ch):
            t0 = tensor[0, c, y]
            t1 = tensor[1, c, y]
            t2 = tensor[2, c, y]
            t3 = tensor[3, c, y]
            t4 = tensor[4, c, y]
            t5 = tensor[5, c, y]
            wrow = weight[c, y]
            if robust:
                du_row = du[py, 1:]
                dv_row = dv[py, 1:]
                for x in range(width):
                    a = du_row[x]
                    b = dv_row[x]
                    residual = (
                        t0[x] * a * a
                        + 2.0 * t1[x] * a * b
                        + 2.0 * t2[x] * a
                        + t3[x] * b * b
                        + 2.0 * t4[x] * b
                        + t5[x]
                    )
                    s2[x] = max(residual, 0.0) + _EPS_PSI
                _power(s2, a_data - 1.0, psi, scratch)
                for x in range(width):
                    wc = wrow[x] * (a_data * psi[x])
                    coef[0, x] += wc * t0[x]
                    coef[1, x] += wc * t1[x]
                    coef[2, x] += wc * t2[x]
                    coef[3, x] += wc * t3[x]
                    coef[4, x] += wc * t4[x]
            else:
                for x in range(width):
                    wc = np.float64(wrow[x])
                    coef[0, x] += wc * t0[x]
                    coef[1, x] += wc * t1[x]
                    coef[2, x] += wc * t2[x]
                    coef[3, x] += wc * t3[x]
                    coef[4, x] += wc * t4[x]
        for x in range(width):  # vectorised: the divisions
            den_u = base[0, y, x] + coef[0, x]
            den_v = base[0, y, x] + coef[3, x]
            if den_u > 0.0:
                factors[0, x] = np.float32(_OMEGA / den_u)
                factors[2, x] = np.float32(1.0 - _OMEGA)
            else:
                factors[0, x] = np.float32(0.0)
                factors[2, x] = np.float32(1.0)
            if den_v > 0.0:
                factors[1, x] = np.float32(_OMEGA / den_v)
                factors[3, x] = np.float32(1.0 - _OMEGA)
            else:
                factors[1, x] = np.float32(0.0)
                factors[3, x] = np.float32(1.0)
        cells = packed[y // _LANES]
        lane = y % _LANES
        # unsigned offsets, as in _sweep: no negative-index test per store
        first = np.uint64(_SLAG * (lane + 1) * _RECORD + _COEF + lane)
        for x in range(width):  # scattered into the records: scalar
            at = first + np.uint64(x * _RECORD)
            cells[at] = factors[0, x]
            cells[at + np.uint64(_LANES)] = factors[1, x]
            cells[at + np.uint64(2 * _LANES)] = factors[2, x]
            cells[at + np.uint64(3 * _LANES)] = factors[3, x]
            cells[at + np.uint64(6 * _LANES)] = coef[1, x]
            cells[at + np.uint64(7 * _LANES)] = coef[2, x]
            cells[at + np.uint64(8 * _LANES)] = coef[4, x]
            if data_only:
                continue
            cells[at + np.uint64(4 * _LANES)] = base[1, y, x]
            cells[at + np.uint64(5 * _LANES)] = base[2, y, x]
            cells[at + np.uint64(9 * _LANES)] = links[1, y, x]
            cells[at + np.uint64(10 * _LANES)] = links[2, y, x]
            cells[at + np.uint64(11 * _LANES)] = links[3, y, x]
            cells[at + np.uint64(12 * _LANES)] = links[0, y, x]


@njit(cache=True, fastmath=True, inline="always")
def _sweep(records: np.ndarray, width: int) -> None:
    """One SOR sweep in row order: each block of 8 rows (``records``: one per block, see
    :func:`solve_level`) as a skewed wavefront, 8 pixels a step."""
    n_blocks = records.shape[0]
    for b in range(n_blocks):
        rec = records[b]
        # the row above: fresh, from the block swept before; the row below: still old
        if b > 0:
            above = records[b - 1]
            for q in range(width):
                src = (q + _SLAG * _LANES) * _RECORD + _LANES
                rec[q * _RECORD] = above[src]
                rec[q * _RECORD + _STRIDE] = above[src + _STRIDE]
        if b + 1 < n_blocks:
            below = records[b + 1]
            for c in range(width):
                dst = (c + _SLAG * (_LANES + 1)) * _RECORD + _LANES + 1
                src = (c + _SLAG) * _RECORD + 1
                rec[dst] = below[src]
                rec[dst + _STRIDE] = below[src + _STRIDE]
        for q in range(_SLAG, width + _SLAG * _LANES):
            # unsigned offsets: numba tests a signed index for wraparound, which hides the
            # access pattern from LLVM's vectoriser
            me = np.uint64(q * _RECORD + 1)
            mev = me + np.uint64(_STRIDE)
            up = me - np.uint64(_SLAG * _RECORD + 1)
            left = me - np.uint64(_RECORD)
            right = me + np.uint64(_RECORD)
            down = me + np.uint64(_SLAG * _RECORD + 1)
            k = np.uint64(q * _RECORD + _COEF)
            for lane in range(_LANES):  # a constant count: one vector operation
                i = np.uint64(lane)
                ru = rec[k + i]
                rest_u = (
                    rec[k + np.uint64(4 * _LANES) + i]
                    - rec[k + np.uint64(7 * _LANES) + i]
                    - rec[k + np.uint64(6 * _LANES) + i] * rec[mev + i]
                    + rec[k + np.uint64(9 * _LANES) + i] * rec[right + i]
                    + rec[k + np.uint64(10 * _LANES) + i] * rec[up + i]
                    + rec[k + np.uint64(11 * _LANES) + i] * rec[down + i]
                )
                new_u = (rec[k + np.uint64(2 * _LANES) + i] * rec[me + i] + ru * rest_u) + (
                    ru * rec[k + np.uint64(12 * _LANES) + i]
                ) * rec[left + i]
                rec[me + i] = new_u
                rv = rec[k + np.uint64(_LANES) + i]
                rest_v = (
                    rec[k + np.uint64(5 * _LANES) + i]
                    - rec[k + np.uint64(8 * _LANES) + i]
                    - rec[k + np.uint64(6 * _LANES) + i] * new_u
                    + rec[k + np.uint64(9 * _LANES) + i] * rec[right + np.uint64(_STRIDE) + i]
                    + rec[k + np.uint64(10 * _LANES) + i] * rec[up + np.uint64(_STRIDE) + i]
                    + rec[k + np.uint64(11 * _LANES) + i] * rec[down + np.uint64(_STRIDE) + i]
                )
                new_v = (rec[k + np.uint64(3 * _LANES) + i] * rec[mev + i] + rv * rest_v) + (
                    rv * rec[k + np.uint64(12 * _LANES) + i]
                ) * rec[left + np.uint64(_STRIDE) + i]
                rec[mev + i] = new_v


@njit(cache=True, fastmath=True, inline="always")
def _unskew(records: np.ndarray, du: np.ndarray, dv: np.ndarray) -> None:
    """Copy the skewed increments into ``du``, ``dv`` (h + 2, w + 2), padded row-major."""
    height, width = du.shape[0] - 2, du.shape[1] - 2
    for y in range(height):
        rec = records[y // _LANES]
        lane = y % _LANES
        first = np.uint64(_SLAG * (lane + 1) * _RECORD + lane + 1)  # unsigned: see _sweep
        du_row = du[y + 1, 1:]
        dv_row = dv[y + 1, 1:]
        for x in range(width):
            at = first + np.uint64(x * _RECORD)
            du_row[x] = rec[at]
            dv_row[x] = rec[at + np.uint64(_STRIDE)]


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def solve_level(
    tensor: np.ndarray,
    weight: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    alpha_x: float,
    alpha_y: float,
    iterations: int,
    update_lag: int,
    a_data: float,
    a_smooth: float,
    hx: float,
    hy: float,
) -> tuple[np.ndarray, np.ndarray]:
    """SOR sweeps for each frame's increment ``(du, dv)`` at one level (Neumann boundaries).

    ``tensor``: ``(N, 6, C, h, w)`` motion tensors; ``weight``: ``(C,)`` channel weights or a
    ``(C, h, w)`` spatial weight map of this level; ``u``, ``v``: ``(N, h, w)`` current flows;
    returns the increments, ``(N, h, w)`` each.

    The non-linear weights are frozen between refreshes, so everything that depends only on
    them (channel sums, neighbour weights, the neighbour sums of the fixed ``u``, ``v``) is
    computed once per refresh and each sweep only gathers the increments of the neighbours.
    """
    n_frames, height, width = u.shape
    n_ch = tensor.shape[2]
    # weight.ndim is a constant of the signature: numba prunes the other branch before
    # typing, so each signature holds one of them. Per-channel weights become constant planes
    # (the same float32 numbers), so both share one refresh.
    if weight.ndim == 1:
        planes = np.empty((n_ch, height, width), dtype=np.float32)
        for c in range(n_ch):
            planes[c] = weight[c]
    else:
        planes = weight
    inc_u = np.empty((n_frames, height, width), dtype=np.float32)
    inc_v = np.empty((n_frames, height, width), dtype=np.float32)
    ax = alpha_x / (hx * hx)
    ay = alpha_y / (hy * hy)
    # Work arrays, reused frame after frame. packed[b]: block b's records, one per wavefront
    # step q; lane j (0 to 9) of step q holds row 8 b - 1 + j, column q - 2 j, of du (and of
    # dv), 0 outside the image. Coefficients of pixels outside the image are never written:
    # factors 0 and 1 leave those lanes at 0.
    n_blocks = (height + _LANES - 1) // _LANES
    n_steps = width + _SLAG * (_LANES + 1)
    packed = np.empty((n_blocks, n_steps * _RECORD), dtype=np.float32)
    du = np.zeros((height + 2, width + 2), dtype=np.float32)  # padded: no border branches
    dv = np.zeros((height + 2, width + 2), dtype=np.float32)
    links = np.empty((4, height, width), dtype=np.float32)
    base = np.empty((3, height, width), dtype=np.float32)
    diffusivity = np.empty((height, width), dtype=np.float32)
    total_u = np.empty((height, width), dtype=np.float32)
    total_v = np.empty((height, width), dtype=np.float32)
    packed[:] = 0.0
    for b in range(n_blocks):
        for q in range(n_steps):
            for i in range(2 * _LANES, 4 * _LANES):
                packed[b, q * _RECORD + _COEF + i] = 1.0
    for t in range(n_frames):
        if t > 0:
            # Only the increments start again from 0: the coefficients of pixels in the image
            # are all rewritten by the first refresh, those outside are never written.
            for b in range(n_blocks):
                for q in range(n_steps):
                    for i in range(_COEF):
                        packed[b, q * _RECORD + i] = 0.0
        diffusivity[:] = 1.0
        # it = -1 sets the first weights (plain data term, unit diffusivity); then every
        # update_lag-th sweep refreshes them. One call site per helper: they are inlined.
        for it in range(-1, iterations):
            if it < 0 or (it + 1) % update_lag == 0:
                if it >= 0:
                    _unskew(packed, du, dv)
                if it < 0 or a_smooth != 1.0:
                    if it >= 0:
                        for y in range(height):
                            for x in range(width):
                                total_u[y, x] = u[t, y, x] + du[y + 1, x + 1]
                                total_v[y, x] = v[t, y, x] + dv[y + 1, x + 1]
                        _smoothness_diffusivity(total_u, total_v, a_smooth, hx, hy, diffusivity)
                    _smoothness_coefficients(diffusivity, u[t], v[t], ax, ay, links, base)
                # np.bool_, not a literal: a literal would be typed as a constant of its own.
                robust = np.bool_(it >= 0)
                _pack_coefficients(
                    tensor[t],
                    planes,
                    du,
                    dv,
                    a_data,
                    robust,
                    links,
                    base,
                    packed,
                    np.bool_(it >= 0 and a_smooth == 1.0),  # smoothness terms as at it = -1
                )
            if it < 0:
                continue
            _sweep(packed, width)
        _unskew(packed, du, dv)
        for y in range(height):
            du_row = du[y + 1, 1:]
            dv_row = dv[y + 1, 1:]
            for x in range(width):
                inc_u[t, y, x] = du_row[x]
                inc_v[t, y, x] = dv_row[x]
    return inc_u, inc_v
