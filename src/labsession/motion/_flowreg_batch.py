"""The ``flowreg`` backend's batch kernel: pyramids, coarse-to-fine levels, frame after frame.

:func:`flow_batch` takes preprocessed frames channel first and returns each frame's flow to the
reference; the per-level kernels are :mod:`labsession.motion._flowreg_kernels`'s and the image
kernels :mod:`labsession.motion._image_kernels`'s.

How it is compiled matters as much as what it computes: the first run on a machine compiles
the kernels (numba, ``cache=True``), later runs load them from the cache. To keep that first
run short:

- the batch kernel is serial and releases the GIL (``nogil``); the caller runs blocks of frames
  on threads. A ``parallel=True`` kernel (``prange`` over frames) computed the same flows but
  compiled several times longer (over a minute on two cores), as numba outlines the loop body
  and compiles the whole call tree again for it;
- it is one function for the batch, the pyramids and the levels: numba optimises and emits
  machine code for every function called from another again inside its caller, so each level
  of calls adds the code below it once more;
- copies are element loops, not array expressions or slice assignments of arrays, which make
  numba compile a loop per broadcast case and its shape-mismatch error formatting;
- a run compiles only the code its options use: the data term (gradient or gray-value
  constancy) and whether the flow needs a final bicubic upsampling are constants of one of four
  variants (:func:`_make_flow_batch`).

numba's cache checks only the source file of the cached function, not the files of the
kernels it calls (whose machine code it holds): each variant therefore also carries a hash of
those sources, :data:`_SOURCE_KEY`, which numba's cache key includes, so an edit of
``_flowreg_kernels.py`` or ``_image_kernels.py`` recompiles it instead of loading stale code.

The results are those of the former ``prange`` kernel, bit for bit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba import njit

from labsession.motion import _flowreg_kernels, _image_kernels
from labsession.motion._flowreg_kernels import (
    motion_tensor_gc,
    motion_tensor_gray,
    pyramid_depth,
    solve_level,
)
from labsession.motion._image_kernels import (
    blur_channels,
    median5,
    resize_channels,
    resize_plane,
    resize_plane_cubic,
    warp_channels,
)

__all__ = ["flow_batch"]


def _source_key() -> str:
    """Hash of the sources of the kernels the batch kernel calls (see the module docstring)."""
    digest = hashlib.sha256()
    for module in (_flowreg_kernels, _image_kernels):
        try:
            digest.update(Path(str(module.__file__)).read_bytes())
        except (OSError, TypeError):  # no source file (a frozen or zipped install)
            digest.update(module.__name__.encode())
    return digest.hexdigest()[:16]


_SOURCE_KEY = _source_key()


def _make_flow_batch(
    gradient_constancy: bool, upsample: bool, source_key: str
) -> Callable[..., np.ndarray]:
    """The batch kernel for one data term, with or without the final upsampling of the flow.

    The flags are constants of the closure: numba drops the branches they rule out before
    typing, so a run compiles (and caches) only the motion tensor of its data term, and the
    bicubic resize only if its solve may end above full resolution (``min_level`` > 0; the
    ``quality`` preset ends at full resolution). numba's cache tells the variants apart by the
    closure's values, ``source_key`` among them.
    """

    @njit(cache=True, nogil=True, fastmath=True)
    def flow_batch(
        fixed: np.ndarray,
        moving: np.ndarray,
        init: np.ndarray,
        init_index: np.ndarray,
        weight: np.ndarray,
        alpha_x: float,
        alpha_y: float,
        eta: float,
        levels: int,
        min_level: int,
        iterations: int,
        update_lag: int,
        a_data: float,
        a_smooth: float,
    ) -> np.ndarray:
        _ = source_key  # a closure value: part of numba's cache key
        n_frames, _n_ch, height, width = moving.shape
        top = pyramid_depth(height, width, eta, levels)
        bottom = min_level
        if top <= bottom:
            bottom = top - 1
        bottom = max(bottom, 0)
        top = max(top, bottom)
        sigma = 0.6 * math.sqrt(max(1.0 / (eta * eta) - 1.0, 0.0))
        fixed_pyramid = [fixed]
        for i in range(1, top + 1):
            lh = max(1, round(height * eta**i))
            lw = max(1, round(width * eta**i))
            blurred = blur_channels(fixed_pyramid[i - 1], sigma)
            fixed_pyramid.append(resize_channels(blurred, lh, lw))
        out = np.empty((n_frames, 2, height, width), dtype=np.float32)
        for t in range(n_frames):
            moving_pyramid = [moving[t]]
            for i in range(1, top + 1):
                fh, fw = fixed_pyramid[i].shape[1], fixed_pyramid[i].shape[2]
                blurred = blur_channels(moving_pyramid[i - 1], sigma)
                moving_pyramid.append(resize_channels(blurred, fh, fw))
            u = init[init_index[t], 0]
            v = init[init_index[t], 1]
            for i in range(top, bottom - 1, -1):
                level = fixed_pyramid[i]
                lh, lw = level.shape[1], level.shape[2]
                u = resize_plane(u, lh, lw)
                v = resize_plane(v, lh, lw)
                hx = width / lw
                hy = height / lh
                warped = warp_channels(moving_pyramid[i], level, u, v, 1.0 / hx, 1.0 / hy)
                if gradient_constancy:
                    tensor = motion_tensor_gc(level, warped, hx, hy)
                else:
                    tensor = motion_tensor_gray(level, warped, hx, hy)
                scale = 1.0 if i == bottom else eta ** (-0.5 * i)
                du, dv = solve_level(
                    tensor,
                    weight,
                    u,
                    v,
                    alpha_x * scale,
                    alpha_y * scale,
                    iterations,
                    update_lag,
                    a_data,
                    a_smooth,
                    hx,
                    hy,
                )
                if min(lh, lw) > 5:
                    du = median5(du)
                    dv = median5(dv)
                # element loops, not ``u + du``: numba's broadcasting array expressions
                # compile a loop version per broadcast case, much of this function's code
                total_u = np.empty((lh, lw), dtype=np.float32)
                total_v = np.empty((lh, lw), dtype=np.float32)
                for y in range(lh):
                    for x in range(lw):
                        total_u[y, x] = u[y, x] + du[y, x]
                        total_v[y, x] = v[y, x] + dv[y, x]
                u = total_u
                v = total_v
            if upsample and (u.shape[0] != height or u.shape[1] != width):
                u = resize_plane_cubic(u, height, width)
                v = resize_plane_cubic(v, height, width)
            # element loops: a slice assignment of an array (``out[t, 0] = u``) compiles
            # numba's shape-mismatch error formatting, seconds of a cold start
            for y in range(height):
                for x in range(width):
                    out[t, 0, y, x] = u[y, x]
                    out[t, 1, y, x] = v[y, x]
        return out

    return flow_batch


_VARIANTS = {
    (gc, up): _make_flow_batch(gc, up, _SOURCE_KEY) for gc in (False, True) for up in (False, True)
}


def flow_batch(
    fixed: np.ndarray,
    moving: np.ndarray,
    init: np.ndarray,
    init_index: np.ndarray,
    weight: np.ndarray,
    alpha_x: float,
    alpha_y: float,
    eta: float,
    levels: int,
    min_level: int,
    iterations: int,
    update_lag: int,
    a_data: float,
    a_smooth: float,
    gradient_constancy: bool,
) -> np.ndarray:
    """Flow from each moving frame to ``fixed``, one frame after the other, without the GIL.

    Parameters
    ----------
    fixed
        ``(C, H, W)`` float32, the preprocessed reference.
    moving
        ``(N, C, H, W)`` float32, the preprocessed frames.
    init, init_index
        ``(M, 2, H, W)`` float32 initial flows ``[u, v]`` in pixels, and ``(N,)`` int64: frame
        ``t`` starts from ``init[init_index[t]]`` (so one shared initial flow is not repeated).
    weight
        ``(C,)`` float32 channel weights summing to 1.
    alpha_x, alpha_y, eta, levels, min_level, iterations, update_lag, a_data, a_smooth
        The model's parameters (see :class:`~labsession.motion.OFOptions`).
    gradient_constancy
        Normalised gradient constancy (``True``) or gray-value constancy as the data term.

    Returns
    -------
    numpy.ndarray
        ``(N, 2, H, W)`` float32 ``[u, v]`` such that ``moving(y + v, x + u) ~ fixed(y, x)``.

    All arrays must be C-contiguous and writable (another layout would be another type
    signature for numba to compile). The kernel releases the GIL, so threads can share a batch.
    """
    # with min_level 0 the solve ends at full resolution: no final upsampling
    kernel = _VARIANTS[(bool(gradient_constancy), min_level > 0)]
    return kernel(
        fixed,
        moving,
        init,
        init_index,
        weight,
        alpha_x,
        alpha_y,
        eta,
        levels,
        min_level,
        iterations,
        update_lag,
        a_data,
        a_smooth,
    )
