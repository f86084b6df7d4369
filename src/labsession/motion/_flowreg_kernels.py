"""numba kernels of the variational optical flow (the ``flowreg`` backend), one level at a time.

The model is Brox et al.'s (2004) warping scheme as used for 2-photon data by Flotho et al.
(2022): for each pyramid level, from coarse to fine, the moving image is warped by the current
flow ``(u, v)`` and an increment ``(du, dv)`` minimises

    sum_c weight_c * Psi_data([du, dv, 1] J_c [du, dv, 1]^T)
        + alpha * Psi_smooth(|grad(u + du)|^2 + |grad(v + dv)|^2),

where ``J_c`` is the motion tensor of channel ``c`` (gray-value, normalised gradient or census
constancy) and ``Psi(s^2) = (s^2 + eps)^a``; ``weight_c`` is one number per channel or, for a
spatial weight map, one per pixel and channel. The Euler-Lagrange equations are solved by
successive over-relaxation with the non-linearities (data weights and the smoothness
diffusivity) frozen for ``update_lag`` sweeps. Flow is kept in full-resolution pixels at every
level; grid spacings ``hx``, ``hy`` > 1 at coarse levels carry the scale.

All arrays are float32, channel-first ``(C, H, W)``. The pyramid and the batch of frames are
:mod:`labsession.motion._flowreg_batch`'s. For a short first (compiling) run, kernels that
only other kernels call have no Python wrapper (``no_cpython_wrapper``), and the four weight
refreshes are inlined into :func:`solve_level` (``inline="always"``, one call site each), so
they are not compiled, optimised and linked as functions of their own. ``_grad``, with six
call sites, is not inlined: inlined, it changed the gray-value flows in the last bits
(fastmath lets LLVM compile the same arithmetic differently in another context).

Only what a run uses is compiled: each data term is a kernel of its own, and a spatial weight
map is another type signature of :func:`solve_level`, whose map-only branch numba prunes from
the per-channel compile (the branch tests ``weight.ndim``, a constant of the signature).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "motion_tensor_cs",
    "motion_tensor_gc",
    "motion_tensor_gray",
    "pyramid_depth",
    "solve_level",
]

_EPS_PSI = 1e-5
_EPS_GC = 1e-6
_OMEGA = 1.95
#: Width of the smoothed Heaviside of the census transform, for images scaled to about [0, 1]
#: (Hafner et al.'s 0.1 for [0, 255], as pyflowreg).
_EPS_CS = 0.1 / 255.0
#: The census transform's eight neighbours ``(dy, dx)``, row by row.
_CENSUS_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@njit(cache=True)
def pyramid_depth(height: int, width: int, eta: float, levels: int) -> int:
    """Index of the coarsest level: shrink by ``eta`` until the short side rounds below 10."""
    depth = 0
    side = float(min(height, width))
    for _ in range(levels):
        depth += 1
        side *= eta
        if round(side) < 10:
            break
    return depth


@njit(cache=True, fastmath=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _grad(image: np.ndarray, hx: float, hy: float) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape
    gx = np.empty_like(image)
    gy = np.empty_like(image)
    for y in range(height):
        ym = max(y - 1, 0)
        yp = min(y + 1, height - 1)
        for x in range(width):
            xm = max(x - 1, 0)
            xp = min(x + 1, width - 1)
            gx[y, x] = (image[y, xp] - image[y, xm]) / (2.0 * hx)
            gy[y, x] = (image[yp, x] - image[ym, x]) / (2.0 * hy)
    return gx, gy


@njit(cache=True, nogil=True, fastmath=True)
def motion_tensor_gc(fixed: np.ndarray, warped: np.ndarray, hx: float, hy: float) -> np.ndarray:
    """Motion tensors ``(N, 6, C, h, w)`` of normalised gradient constancy between ``fixed``
    ``(C, h, w)`` and each warped frame ``(N, C, h, w)``, ordered J11, J12, J13, J22, J23, J33;
    zero on the border."""
    n_frames, n_ch, height, width = warped.shape
    tensor = np.zeros((n_frames, 6, n_ch, height, width), dtype=np.float32)
    for t in range(n_frames):
        for c in range(n_ch):
            gx1, gy1 = _grad(fixed[c], hx, hy)
            gx2, gy2 = _grad(warped[t, c], hx, hy)
            _, gxy1 = _grad(gx1, hx, hy)
            _, gxy2 = _grad(gx2, hx, hy)
            for y in range(1, height - 1):
                for x in range(1, width - 1):
                    # compact second differences for fxx, fyy; fxy from the x-gradient
                    f1c = fixed[c, y, x]
                    f2c = warped[t, c, y, x]
                    fxx = (
                        0.5
                        * (
                            fixed[c, y, x - 1]
                            - 2.0 * f1c
                            + fixed[c, y, x + 1]
                            + warped[t, c, y, x - 1]
                            - 2.0 * f2c
                            + warped[t, c, y, x + 1]
                        )
                        / (hx * hx)
                    )
                    fyy = (
                        0.5
                        * (
                            fixed[c, y - 1, x]
                            - 2.0 * f1c
                            + fixed[c, y + 1, x]
                            + warped[t, c, y - 1, x]
                            - 2.0 * f2c
                            + warped[t, c, y + 1, x]
                        )
                        / (hy * hy)
                    )
                    fxy = 0.5 * (gxy1[y, x] + gxy2[y, x])
                    fxt = gx2[y, x] - gx1[y, x]
                    fyt = gy2[y, x] - gy1[y, x]
                    rx = 1.0 / (fxx * fxx + fxy * fxy + _EPS_GC)
                    ry = 1.0 / (fxy * fxy + fyy * fyy + _EPS_GC)
                    tensor[t, 0, c, y, x] = rx * fxx * fxx + ry * fxy * fxy
                    tensor[t, 1, c, y, x] = rx * fxx * fxy + ry * fxy * fyy
                    tensor[t, 2, c, y, x] = rx * fxx * fxt + ry * fxy * fyt
                    tensor[t, 3, c, y, x] = rx * fxy * fxy + ry * fyy * fyy
                    tensor[t, 4, c, y, x] = rx * fxy * fxt + ry * fyy * fyt
                    tensor[t, 5, c, y, x] = rx * fxt * fxt + ry * fyt * fyt
    return tensor


@njit(cache=True, nogil=True, fastmath=True)
def motion_tensor_gray(fixed: np.ndarray, warped: np.ndarray, hx: float, hy: float) -> np.ndarray:
    """Motion tensors ``(N, 6, C, h, w)`` of gray-value constancy (as :func:`motion_tensor_gc`)."""
    n_frames, n_ch, height, width = warped.shape
    tensor = np.zeros((n_frames, 6, n_ch, height, width), dtype=np.float32)
    for t in range(n_frames):
        for c in range(n_ch):
            gx1, gy1 = _grad(fixed[c], hx, hy)
            gx2, gy2 = _grad(warped[t, c], hx, hy)
            for y in range(1, height - 1):
                for x in range(1, width - 1):
                    fx = 0.5 * (gx1[y, x] + gx2[y, x])
                    fy = 0.5 * (gy1[y, x] + gy2[y, x])
                    ft = warped[t, c, y, x] - fixed[c, y, x]
                    tensor[t, 0, c, y, x] = fx * fx
                    tensor[t, 1, c, y, x] = fx * fy
                    tensor[t, 2, c, y, x] = fx * ft
                    tensor[t, 3, c, y, x] = fy * fy
                    tensor[t, 4, c, y, x] = fy * ft
                    tensor[t, 5, c, y, x] = ft * ft
    return tensor


@njit(cache=True, fastmath=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _census_signs(image: np.ndarray, hx: float, hy: float, out: np.ndarray) -> None:
    """Smoothed census transform of ``image`` (h, w) into ``out`` (8, h, w): for each neighbour
    ``n``, ``0.5 * (1 + r / sqrt(r^2 + eps^2))`` with ``r = (image[n] - image) / |n|`` (the
    distance in full-resolution pixels; replicated borders)."""
    height, width = image.shape
    eps2 = _EPS_CS * _EPS_CS
    for k in range(8):
        dy, dx = _CENSUS_OFFSETS[k]
        dist = np.sqrt((hy * dy) * (hy * dy) + (hx * dx) * (hx * dx))
        for y in range(height):
            yn = min(max(y + dy, 0), height - 1)
            for x in range(width):
                xn = min(max(x + dx, 0), width - 1)
                r = (image[yn, xn] - image[y, x]) / dist
                out[k, y, x] = 0.5 * (1.0 + r / np.sqrt(r * r + eps2))


@njit(cache=True, nogil=True, fastmath=True)
def motion_tensor_cs(fixed: np.ndarray, warped: np.ndarray, hx: float, hy: float) -> np.ndarray:
    """Motion tensors ``(N, 6, C, h, w)`` of census constancy (as :func:`motion_tensor_gc`).

    Hafner, Demetz and Weickert's (2013) linearised census data term as pyflowreg defines it:
    for each of the eight neighbours, the smoothed census signs ``s1`` (``fixed``) and ``s2``
    (warped frame) give ``sx``, ``sy`` (central differences averaged over both images) and
    ``st = s2 - s1``, and the tensor is ``2 / 8`` times the sum of their outer products. The
    signs depend on the order of neighbouring values only (up to ``eps``), so brightness
    changes that keep that order (offsets, gains, gamma) barely change the data term.
    """
    n_frames, n_ch, height, width = warped.shape
    tensor = np.zeros((n_frames, 6, n_ch, height, width), dtype=np.float32)
    signs_fixed = np.empty((n_ch, 8, height, width), dtype=np.float32)
    for c in range(n_ch):
        _census_signs(fixed[c], hx, hy, signs_fixed[c])
    signs = np.empty((8, height, width), dtype=np.float32)
    for t in range(n_frames):
        for c in range(n_ch):
            _census_signs(warped[t, c], hx, hy, signs)
            s1 = signs_fixed[c]
            for y in range(1, height - 1):
                for x in range(1, width - 1):
                    j11 = 0.0
                    j12 = 0.0
                    j13 = 0.0
                    j22 = 0.0
                    j23 = 0.0
                    j33 = 0.0
                    for k in range(8):
                        sx = 0.5 * (
                            (s1[k, y, x + 1] - s1[k, y, x - 1]) / (2.0 * hx)
                            + (signs[k, y, x + 1] - signs[k, y, x - 1]) / (2.0 * hx)
                        )
                        sy = 0.5 * (
                            (s1[k, y + 1, x] - s1[k, y - 1, x]) / (2.0 * hy)
                            + (signs[k, y + 1, x] - signs[k, y - 1, x]) / (2.0 * hy)
                        )
                        st = signs[k, y, x] - s1[k, y, x]
                        j11 += sx * sx
                        j12 += sx * sy
                        j13 += sx * st
                        j22 += sy * sy
                        j23 += sy * st
                        j33 += st * st
                    tensor[t, 0, c, y, x] = 0.25 * j11
                    tensor[t, 1, c, y, x] = 0.25 * j12
                    tensor[t, 2, c, y, x] = 0.25 * j13
                    tensor[t, 3, c, y, x] = 0.25 * j22
                    tensor[t, 4, c, y, x] = 0.25 * j23
                    tensor[t, 5, c, y, x] = 0.25 * j33
    return tensor


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
def _data_coefficients(
    tensor: np.ndarray,
    weight: np.ndarray,
    du: np.ndarray,
    dv: np.ndarray,
    a_data: float,
    robust: bool,
    coef: np.ndarray,
) -> None:
    """Channel sums ``sum_c weight_c psi_c J_c`` into ``coef`` (5, h, w): 11, 12, 13, 22, 23.

    ``psi_c`` is the robust data weight at the current increment (``du``, ``dv`` padded by
    one pixel); with ``robust`` false it is 1 (the first sweeps of a level).
    """
    n_ch, height, width = tensor.shape[1], tensor.shape[2], tensor.shape[3]
    coef[:] = 0.0
    for c in range(n_ch):
        for y in range(height):
            for x in range(width):
                wc = weight[c]
                if robust:
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
                    wc *= a_data * (max(s2, 0.0) + _EPS_PSI) ** (a_data - 1.0)
                coef[0, y, x] += wc * tensor[0, c, y, x]
                coef[1, y, x] += wc * tensor[1, c, y, x]
                coef[2, y, x] += wc * tensor[2, c, y, x]
                coef[3, y, x] += wc * tensor[3, c, y, x]
                coef[4, y, x] += wc * tensor[4, c, y, x]


@njit(cache=True, fastmath=True, inline="always")
def _data_coefficients_map(
    tensor: np.ndarray,
    weight: np.ndarray,
    du: np.ndarray,
    dv: np.ndarray,
    a_data: float,
    robust: bool,
    coef: np.ndarray,
) -> None:
    """:func:`_data_coefficients` with a spatial weight map ``weight`` (C, h, w): each pixel
    and channel has its own weight (pyflowreg's 2-D / 3-D ``weight``)."""
    n_ch, height, width = tensor.shape[1], tensor.shape[2], tensor.shape[3]
    coef[:] = 0.0
    for c in range(n_ch):
        for y in range(height):
            for x in range(width):
                wc = weight[c, y, x]
                if robust:
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
                    wc *= a_data * (max(s2, 0.0) + _EPS_PSI) ** (a_data - 1.0)
                coef[0, y, x] += wc * tensor[0, c, y, x]
                coef[1, y, x] += wc * tensor[1, c, y, x]
                coef[2, y, x] += wc * tensor[2, c, y, x]
                coef[3, y, x] += wc * tensor[3, c, y, x]
                coef[4, y, x] += wc * tensor[4, c, y, x]


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
def _relaxation_factors(
    links: np.ndarray, base: np.ndarray, coef: np.ndarray, relax: np.ndarray
) -> None:
    """SOR factors ``relax`` (4, h, w) for the frozen weights: ``omega / den`` for u and v,
    then ``1 - omega`` for each (1 and 0 where ``den`` is 0: that increment is not updated)."""
    height, width = relax.shape[1], relax.shape[2]
    for y in range(height):
        for x in range(width):
            den_u = base[0, y, x] + coef[0, y, x]
            den_v = base[0, y, x] + coef[3, y, x]
            if den_u > 0.0:
                relax[0, y, x] = _OMEGA / den_u
                relax[2, y, x] = 1.0 - _OMEGA
            else:
                relax[0, y, x] = 0.0
                relax[2, y, x] = 1.0
            if den_v > 0.0:
                relax[1, y, x] = _OMEGA / den_v
                relax[3, y, x] = 1.0 - _OMEGA
            else:
                relax[1, y, x] = 0.0
                relax[3, y, x] = 1.0


@njit(cache=True, nogil=True, fastmath=True)
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
    inc_u = np.empty((n_frames, height, width), dtype=np.float32)
    inc_v = np.empty((n_frames, height, width), dtype=np.float32)
    for t in range(n_frames):
        du = np.zeros((height + 2, width + 2), dtype=np.float32)  # padded: no border branches
        dv = np.zeros((height + 2, width + 2), dtype=np.float32)
        coef = np.empty((5, height, width), dtype=np.float32)
        links = np.empty((4, height, width), dtype=np.float32)
        base = np.empty((3, height, width), dtype=np.float32)
        diffusivity = np.ones((height, width), dtype=np.float32)
        total_u = np.empty((height, width), dtype=np.float32)
        total_v = np.empty((height, width), dtype=np.float32)
        ax = alpha_x / (hx * hx)
        ay = alpha_y / (hy * hy)
        relax = np.empty((4, height, width), dtype=np.float32)
        # it = -1 sets the first weights (plain data term, unit diffusivity); then every
        # update_lag-th sweep refreshes them. One call site per helper: they are inlined.
        for it in range(-1, iterations):
            if it < 0 or (it + 1) % update_lag == 0:
                # np.bool_, not a literal: a literal would be typed as a constant of its own.
                # weight.ndim is a constant of the signature: numba prunes the other branch
                # before typing, so the per-channel compile holds no map code.
                if weight.ndim == 1:
                    _data_coefficients(tensor[t], weight, du, dv, a_data, np.bool_(it >= 0), coef)
                else:
                    _data_coefficients_map(
                        tensor[t], weight, du, dv, a_data, np.bool_(it >= 0), coef
                    )
                if it < 0 or a_smooth != 1.0:
                    if it >= 0:
                        for y in range(height):
                            for x in range(width):
                                total_u[y, x] = u[t, y, x] + du[y + 1, x + 1]
                                total_v[y, x] = v[t, y, x] + dv[y + 1, x + 1]
                        _smoothness_diffusivity(total_u, total_v, a_smooth, hx, hy, diffusivity)
                    _smoothness_coefficients(diffusivity, u[t], v[t], ax, ay, links, base)
                _relaxation_factors(links, base, coef, relax)
            if it < 0:
                continue
            for y in range(height):
                py = y + 1
                for x in range(width):
                    px = x + 1
                    # everything but the left neighbour's fresh increment is off the serial
                    # dependency chain of the sweep: one multiply-add per pixel remains on it
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
        for y in range(height):
            for x in range(width):
                inc_u[t, y, x] = du[y + 1, x + 1]
                inc_v[t, y, x] = dv[y + 1, x + 1]
    return inc_u, inc_v
