"""The SOR solver's wavefront and power function give the flows of a plain row-by-row SOR.

:func:`labsession.motion._sor_kernels.solve_level` sweeps 8 rows at once as a skewed wavefront
over packed records and computes the robust weights' power in vectorised loops. Here a plain
lexicographic SOR (pixel after pixel, row after row, the C library's ``pow``), compiled with the
same flags, must give the same increments bit for bit, for every data term, per-channel
weights and a weight map, constant and adaptive smoothness, and sizes that are no multiple of
the wavefront's 8 rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from labsession.motion._flowreg_kernels import (
    _grad,
    motion_tensor_cs,
    motion_tensor_gc,
    motion_tensor_gray,
)
from labsession.motion._image_kernels import _bicubic, warp_frames
from labsession.motion._sor_kernels import _power, solve_level

_TENSORS = {"gc": motion_tensor_gc, "gray": motion_tensor_gray, "cs": motion_tensor_cs}


@njit(fastmath=True)
def _reference_sor(tensor, planes, u, v, ax, ay, iterations, update_lag, a_data, a_smooth, hx, hy):
    """Lexicographic SOR of one frame: ``tensor`` (6, C, h, w), ``planes`` (C, h, w) weights,
    ``u``, ``v`` (h, w) flows; returns ``du``, ``dv`` (h + 2, w + 2), zero padded."""
    n_ch, height, width = tensor.shape[1], tensor.shape[2], tensor.shape[3]
    du = np.zeros((height + 2, width + 2), dtype=np.float32)
    dv = np.zeros((height + 2, width + 2), dtype=np.float32)
    coef = np.empty((5, height, width), dtype=np.float32)
    links = np.zeros((4, height, width), dtype=np.float32)
    base = np.empty((3, height, width), dtype=np.float32)
    relax = np.empty((4, height, width), dtype=np.float32)
    diffusivity = np.ones((height, width), dtype=np.float32)
    for it in range(-1, iterations):
        if it < 0 or (it + 1) % update_lag == 0:
            # data term: channel sums of weight * psi * J (psi = 1 before the first sweep)
            coef[:] = 0.0
            for c in range(n_ch):
                for y in range(height):
                    for x in range(width):
                        wc = np.float64(planes[c, y, x])
                        if it >= 0:
                            a = du[y + 1, x + 1]
                            b = dv[y + 1, x + 1]
                            s2 = (
                                tensor[0, c, y, x] * a * a
                                + 2.0 * tensor[1, c, y, x] * a * b
                                + 2.0 * tensor[2, c, y, x] * a
                                + tensor[3, c, y, x] * b * b
                                + 2.0 * tensor[4, c, y, x] * b
                                + tensor[5, c, y, x]
                            )
                            wc = wc * (a_data * (max(s2, 0.0) + 1e-5) ** (a_data - 1.0))
                        for k in range(5):
                            coef[k, y, x] += wc * tensor[k, c, y, x]
            # smoothness: diffusivity of the total flow, neighbour weights, fixed-flow sums
            if it < 0 or a_smooth != 1.0:
                if it >= 0:
                    tu = u + du[1:-1, 1:-1]
                    tv = v + dv[1:-1, 1:-1]
                    ux, uy = _grad(tu, hx, hy)
                    vx, vy = _grad(tv, hx, hy)
                    for y in range(height):
                        for x in range(width):
                            s2 = ux[y, x] ** 2 + uy[y, x] ** 2 + vx[y, x] ** 2 + vy[y, x] ** 2
                            diffusivity[y, x] = a_smooth * (s2 + 1e-5) ** (a_smooth - 1.0)
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
                        xl, xr = max(x - 1, 0), min(x + 1, width - 1)
                        yu, yd = max(y - 1, 0), min(y + 1, height - 1)
                        gl, gr, gu, gd = (
                            links[0, y, x],
                            links[1, y, x],
                            links[2, y, x],
                            links[3, y, x],
                        )
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
            for y in range(height):
                for x in range(width):
                    den_u = base[0, y, x] + coef[0, y, x]
                    den_v = base[0, y, x] + coef[3, y, x]
                    relax[0, y, x] = 1.95 / den_u if den_u > 0.0 else 0.0
                    relax[2, y, x] = 1.0 - 1.95 if den_u > 0.0 else 1.0
                    relax[1, y, x] = 1.95 / den_v if den_v > 0.0 else 0.0
                    relax[3, y, x] = 1.0 - 1.95 if den_v > 0.0 else 1.0
        if it < 0:
            continue
        for y in range(height):  # one sweep, pixel after pixel
            py = y + 1
            for x in range(width):
                px = x + 1
                ru = relax[0, y, x]
                rest_u = (
                    base[1, y, x]
                    - coef[2, y, x]
                    - coef[1, y, x] * dv[py, px]
                    + links[1, y, x] * du[py, px + 1]
                    + links[2, y, x] * du[py - 1, px]
                    + links[3, y, x] * du[py + 1, px]
                )
                du[py, px] = (relax[2, y, x] * du[py, px] + ru * rest_u) + (
                    ru * links[0, y, x]
                ) * du[py, px - 1]
                rv = relax[1, y, x]
                rest_v = (
                    base[2, y, x]
                    - coef[4, y, x]
                    - coef[1, y, x] * du[py, px]
                    + links[1, y, x] * dv[py, px + 1]
                    + links[2, y, x] * dv[py - 1, px]
                    + links[3, y, x] * dv[py + 1, px]
                )
                dv[py, px] = (relax[3, y, x] * dv[py, px] + rv * rest_v) + (
                    rv * links[0, y, x]
                ) * dv[py, px - 1]
    return du, dv


def _problem(constancy: str, shape: tuple[int, int], seed: int):
    rng = np.random.default_rng(seed)
    fixed = rng.random((2, *shape)).astype(np.float32)
    warped = (fixed[None] + 0.1 * rng.normal(size=(2, 2, *shape))).astype(np.float32)
    tensor = _TENSORS[constancy](fixed, warped, 1.25, 1.25)
    u = (0.5 * rng.normal(size=(2, *shape))).astype(np.float32)
    v = (0.5 * rng.normal(size=(2, *shape))).astype(np.float32)
    return tensor, u, v


@pytest.mark.parametrize("constancy", ["gc", "gray", "cs"])
@pytest.mark.parametrize(
    ("shape", "spatial", "a_smooth"),
    [
        ((21, 27), False, 1.0),
        ((21, 27), True, 0.5),
        ((9, 3), False, 0.5),
        ((16, 40), True, 1.0),
        ((5, 12), False, 1.0),
        ((37, 19), True, 0.5),
    ],
)
def test_solve_level_equals_lexicographic_sor(constancy, shape, spatial, a_smooth):
    tensor, u, v = _problem(constancy, shape, seed=len(constancy) + shape[0])
    rng = np.random.default_rng(7)
    if spatial:
        weight = (0.2 + rng.random((2, *shape))).astype(np.float32)
        planes = weight
    else:
        weight = np.array([0.3, 0.7], dtype=np.float32)
        planes = np.broadcast_to(weight[:, None, None], (2, *shape)).copy()
    params = (1.5, 2.0, 23, 4, 0.45, a_smooth, 1.25, 1.25)
    inc_u, inc_v = solve_level(tensor, weight, u, v, *params)
    ax, ay = 1.5 / (1.25 * 1.25), 2.0 / (1.25 * 1.25)
    for t in range(2):
        du, dv = _reference_sor(tensor[t], planes, u[t], v[t], ax, ay, *params[2:])
        assert np.abs(du).max() > 1e-3  # the sweeps did move the increments
        np.testing.assert_array_equal(inc_u[t], du[1:-1, 1:-1])
        np.testing.assert_array_equal(inc_v[t], dv[1:-1, 1:-1])


@njit
def _call_power(base, exponent, out, scratch):
    _power(base, exponent, out, scratch)


@pytest.mark.parametrize("exponent", [-0.55, -0.99, -0.3, -0.001, 0.0])
def test_power_is_pow_to_a_few_units_in_the_last_place(exponent):
    rng = np.random.default_rng(3)
    base = np.concatenate(
        [10.0 ** rng.uniform(-5.0, 8.0, 20000), [1e-5, 0.5, 1.0, 2.0, 1e300, 0.0, np.inf, np.nan]]
    )
    out = np.empty_like(base)
    _call_power(base, exponent, out, np.empty(base.size, dtype=np.int64))
    with np.errstate(divide="ignore"):
        expected = base**exponent  # pow(0, negative) = inf
    finite = np.isfinite(expected)
    # the solver's bases (>= 1e-5, squared residuals of images scaled to about [0, 1]): tens of
    # units in the last place; the error grows with |exponent * log(base)|, hence 1e300's
    ulps = np.abs(out[:20000].view(np.int64) - expected[:20000].view(np.int64))
    assert ulps.max() <= 32
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-13, atol=0)
    # what the solver keeps: float32 products; and pow's answer for 0, inf and NaN
    np.testing.assert_array_equal(
        (0.3 * out[finite]).astype(np.float32), (0.3 * expected[finite]).astype(np.float32)
    )
    np.testing.assert_array_equal(out[-3:], expected[-3:])


def test_warp_frames_equals_bicubic_per_channel():
    rng = np.random.default_rng(5)
    moving = rng.random((2, 2, 13, 17)).astype(np.float32)
    fixed = rng.random((2, 13, 17)).astype(np.float32)
    u = (3 * rng.normal(size=(2, 13, 17))).astype(np.float32)
    v = (3 * rng.normal(size=(2, 13, 17))).astype(np.float32)
    out = warp_frames(moving, fixed, u, v, 0.8, 1.1)
    inside = 0
    for t in range(2):
        for y in range(13):
            for x in range(17):
                ys = y + float(v[t, y, x]) * 1.1  # float64, as in the kernel
                xs = x + float(u[t, y, x]) * 0.8
                for c in range(2):
                    if 0.0 <= ys <= 12.0 and 0.0 <= xs <= 16.0:
                        inside += 1
                        assert out[t, c, y, x] == _bicubic(moving[t, c], ys, xs)
                    else:
                        assert out[t, c, y, x] == fixed[c, y, x]
    assert 100 < inside < 2 * 2 * 13 * 17
