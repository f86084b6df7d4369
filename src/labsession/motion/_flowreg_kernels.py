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
diffusivity) frozen for ``update_lag`` sweeps (:mod:`labsession.motion._sor_kernels`). Flow is
kept in full-resolution pixels at every level; grid spacings ``hx``, ``hy`` > 1 at coarse levels
carry the scale.

This module holds the data terms' motion tensors. All arrays are float32, channel-first
``(C, H, W)``. The pyramid and the batch of frames are
:mod:`labsession.motion._flowreg_batch`'s. For a short first (compiling) run, kernels that
only other kernels call have no Python wrapper (``no_cpython_wrapper``). ``_grad``, with six
call sites, is not inlined: inlined, it changed the gray-value flows in the last bits
(fastmath lets LLVM compile the same arithmetic differently in another context).

Only what a run uses is compiled: each data term is a kernel of its own.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "motion_tensor_cs",
    "motion_tensor_gc",
    "motion_tensor_gray",
    "pyramid_depth",
]

_EPS_GC = 1e-6
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
