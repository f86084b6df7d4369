"""The ``flowreg`` backend's batch driver: pyramids, coarse-to-fine levels, blocks of frames.

:class:`FlowPlan` takes preprocessed frames channel first, a block at a time, and writes each
frame's flow to the reference. It is plain Python that calls, per pyramid level, one numba
kernel per step (blur, resize, warp, motion tensor, SOR solve, median) on a whole block of
frames at once: the kernels of :mod:`labsession.motion._flowreg_kernels`,
:mod:`labsession.motion._sor_kernels` and :mod:`labsession.motion._image_kernels` loop over the
frames themselves and release the GIL, and threads run blocks at once.

Why not one numba function for the whole batch, as before: the first run on a machine compiles
the kernels (numba, ``cache=True``), and numba optimises and emits machine code for every
kernel a compiled function calls again inside that caller. A single batch kernel thus compiled
the whole solver twice; driven from Python, each kernel is compiled once, and only the kernels
a run uses (the data term's motion tensor). A cold start is 20-30 % shorter, and the flows are
the same, bit for bit. Calls are per block of frames, not per frame, so the interpreter's share
stays small with many threads: a block holds at most :data:`_PIXELS_PER_CALL` pixels of
full-resolution frames (the motion tensors of a block take 24 bytes per pixel and channel).
"""

from __future__ import annotations

import math

import numpy as np

from labsession.motion._flowreg_kernels import (
    motion_tensor_cs,
    motion_tensor_gc,
    motion_tensor_gray,
    pyramid_depth,
)
from labsession.motion._image_kernels import (
    blur_channels,
    interleave_flow,
    median5,
    resize_channels,
    resize_cubic,
    warp_frames,
)
from labsession.motion._sor_kernels import solve_level
from labsession.motion._weight_maps import level_weight

__all__ = ["FlowPlan"]

#: Full-resolution pixels per kernel call (frames x height x width): bounds a block's memory.
_PIXELS_PER_CALL = 1 << 19

#: The motion-tensor kernel of each data term (``constancy_assumption``).
_TENSOR_KERNELS = {"gc": motion_tensor_gc, "gray": motion_tensor_gray, "cs": motion_tensor_cs}


def _pyramid(images: np.ndarray, sizes: list[tuple[int, int]], sigma: float) -> list[np.ndarray]:
    """Levels of ``(K, H, W)`` images: level ``i`` is level ``i - 1`` blurred and resized
    (bicubic) to ``sizes[i]``; level 0 is ``images``.

    Bicubic (Keys' cubic, as OpenCV's and pyflowreg's), not bilinear: a linear interpolation
    at a fraction ``f`` of a pixel also averages two pixels, so bilinear levels were blurrier
    than their Gaussian (92 % of its amplitude at a 5 px period, ``tests/motion/test_pyramid``)
    and the coarse levels lost texture the data term needs. On the benchmark's synthetic
    videos (``benchmarks/motion_bench.py``, 40 frames) the endpoint error at ``balanced`` went
    from 0.202 to 0.194 px at 256x256 and from 0.201 to 0.193 px at 512x512 (pyflowreg 0.196
    and 0.195), at ``fast`` from 0.211 to 0.195 and 0.213 to 0.197 px.
    """
    levels = [images]
    for height, width in sizes[1:]:
        levels.append(resize_cubic(blur_channels(levels[-1], sigma), height, width))
    return levels


class FlowPlan:
    """The flows of blocks of frames to one reference: what every block shares, built once
    (the pyramid's sizes, the reference's pyramid, the data term's weight at each level), and
    :meth:`run` for a block.

    Parameters
    ----------
    fixed
        ``(C, H, W)`` float32, the preprocessed reference.
    weight
        ``(C,)`` float32 channel weights, or a ``(C, H, W)`` float32 spatial weight map of the
        data term, resized to each level as pyflowreg does
        (:func:`~labsession.motion._weight_maps.level_weight`).
    alpha_x, alpha_y, eta, levels, min_level, iterations, update_lag, a_data, a_smooth
        The model's parameters (see :class:`~labsession.motion.OFOptions`).
    constancy
        The data term: ``"gc"`` (normalised gradient constancy), ``"gray"`` (gray-value
        constancy) or ``"cs"`` (census constancy).

    All arrays must be C-contiguous and writable (another layout would be another type
    signature for numba to compile). The kernels release the GIL and :meth:`run` only reads the
    plan, so threads share one plan and run blocks of a batch at once (the ``flowreg``
    backend does).
    """

    def __init__(
        self,
        fixed: np.ndarray,
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
        constancy: str,
    ) -> None:
        _, height, width = fixed.shape
        top = int(pyramid_depth(height, width, eta, levels))
        self.bottom = max(min(min_level, top - 1), 0)
        self.top = max(top, self.bottom)
        self.sigma = 0.6 * math.sqrt(max(1.0 / (eta * eta) - 1.0, 0.0))
        self.sizes = [(height, width)]
        for i in range(1, self.top + 1):
            self.sizes.append((max(1, round(height * eta**i)), max(1, round(width * eta**i))))
        self.fixed_pyramid = _pyramid(fixed, self.sizes, self.sigma)
        self.tensor_kernel = _TENSOR_KERNELS[constancy]
        # per-channel weights are the same at every level; a map is resized to each level solved
        self.level_weights = {
            i: level_weight(weight, *self.sizes[i]) if weight.ndim == 3 else weight
            for i in range(self.bottom, self.top + 1)
        }
        self.alpha = (alpha_x, alpha_y)
        self.eta = eta
        self.solver = (iterations, update_lag, a_data, a_smooth)
        #: Frames per kernel call: a block holds at most _PIXELS_PER_CALL full-resolution pixels.
        self.block = max(1, _PIXELS_PER_CALL // (height * width))

    def run(
        self,
        moving: np.ndarray,
        init: np.ndarray,
        init_index: np.ndarray,
        out: np.ndarray,
        *,
        channel_last: bool = True,
    ) -> None:
        """Flow from each frame of a block to the reference, written into ``out``.

        Parameters
        ----------
        moving
            ``(n, C, H, W)`` float32, the preprocessed frames (at most :attr:`block`).
        init, init_index
            ``(M, 2, H, W)`` float32 initial flows ``[u, v]`` in pixels, and ``(n,)`` int64:
            frame ``t`` starts from ``init[init_index[t]]`` (one shared initial flow is not
            repeated).
        out
            ``(n, H, W, 2)`` float32 with ``channel_last`` (the backends' layout: no transposed
            copy afterwards), else ``(n, 2, H, W)``: ``[u, v]`` such that
            ``moving(y + v, x + u) ~ fixed(y, x)``.
        """
        n, n_ch, height, width = moving.shape
        sizes, bottom, eta = self.sizes, self.bottom, self.eta
        flat = moving.reshape(n * n_ch, height, width)
        moving_pyramid = [
            level.reshape(n, n_ch, *level.shape[1:]) for level in _pyramid(flat, sizes, self.sigma)
        ]
        u = init[init_index, 0]
        v = init[init_index, 1]
        for i in range(self.top, bottom - 1, -1):
            level = self.fixed_pyramid[i]
            lh, lw = sizes[i]
            u = resize_channels(u, lh, lw)
            v = resize_channels(v, lh, lw)
            hx = width / lw
            hy = height / lh
            warped = warp_frames(moving_pyramid[i], level, u, v, 1.0 / hx, 1.0 / hy)
            tensor = self.tensor_kernel(level, warped, hx, hy)
            scale = 1.0 if i == bottom else eta ** (-0.5 * i)
            du, dv = solve_level(
                tensor,
                self.level_weights[i],
                u,
                v,
                self.alpha[0] * scale,
                self.alpha[1] * scale,
                *self.solver,
                hx,
                hy,
            )
            if min(lh, lw) > 5:
                du = median5(du)
                dv = median5(dv)
            u = u + du
            v = v + dv
        if u.shape[1:] != (height, width):
            u = resize_cubic(u, height, width)
            v = resize_cubic(v, height, width)
        if channel_last:
            interleave_flow(u, v, out)
        else:
            out[:, 0] = u
            out[:, 1] = v
