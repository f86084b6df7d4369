"""Spatial weight maps of the data term (``OFOptions.weight`` of shape ``(H, W)`` or ``(H, W, C)``).

pyflowreg weighs the data term of each pixel and channel by a map; per-channel weights are the
special case of a map constant in each channel. The ``flowreg`` backends take per-channel
weights ``(C,)`` from the engine, and :func:`data_weight` swaps in the map from the options:
as given, not normalised (as pyflowreg), and reduced to per-channel weights when each channel's
plane is constant, so such a map gives the per-channel flows bit for bit (a resized constant is
not always exactly the constant in float32).

At each pyramid level the full-resolution map is resized to the level's size, as pyflowreg
does: a Gaussian of ``sigma = 0.6 / scale`` fused with Keys' cubic kernel (``a = -0.75``),
symmetric borders (pyflowreg's ``imresize_fused_gauss_cubic``). Weights are clipped at 0 after
resizing (the cubic kernel overshoots at steps; a negative weight would reward a residual).
"""

from __future__ import annotations

import math

import numpy as np

from labsession.errors import ConfigError
from labsession.motion._options import OFOptions

__all__ = ["data_weight", "level_weight", "resize_weight_map"]


def data_weight(
    options: OFOptions, weight: np.ndarray, n_channels: int, height: int, width: int
) -> np.ndarray:
    """The data-term weight a ``flowreg`` backend uses for frames of ``height x width``.

    Parameters
    ----------
    options
        The backend's options; ``options.weight`` may be a spatial map.
    weight
        ``(C,)`` per-channel weights the engine passes (:meth:`OFOptions.channel_weights`).
    n_channels, height, width
        The frames' channels and size (pixels).

    Returns
    -------
    numpy.ndarray
        ``weight`` itself when ``options.weight`` is per channel; for a map, ``(C,)`` float32
        of its values when each channel's plane is constant, else the ``(C, height, width)``
        float32 map (channel ``i`` is :meth:`OFOptions.get_weight_at`). A map of the
        unbinned frames' size is binned like the frames when ``bin_size > 1``.

    Raises
    ------
    ConfigError
        If the map's size is neither the frames' nor, binned by ``bin_size``, theirs.
    """
    if not isinstance(options.weight, np.ndarray):
        return weight
    planes = np.stack([options.get_weight_at(i, n_channels) for i in range(n_channels)])
    map_h, map_w = planes.shape[1:]
    factor = options.bin_size
    if (map_h, map_w) != (height, width):
        if factor > 1 and (map_h // factor, map_w // factor) == (height, width):
            blocks = planes[:, : height * factor, : width * factor]
            planes = blocks.reshape(n_channels, height, factor, width, factor).mean(axis=(2, 4))
        else:
            binned = f" (or {height * factor}x{width * factor} before bin_size {factor})"
            raise ConfigError(
                f"weight is a spatial map of {map_h}x{map_w} pixels, but the frames are "
                f"{height}x{width}{binned if factor > 1 else ''}: give a map of the frames' "
                "size, (H, W) or (H, W, C), or one weight per channel"
            )
    flat = planes.reshape(n_channels, -1)
    if (flat == flat[:, :1]).all():
        return flat[:, 0].astype(np.float32)
    return np.ascontiguousarray(planes, dtype=np.float32)


def _cubic(d: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.75`` (OpenCV's and pyflowreg's)."""
    a = -0.75
    x = np.abs(d)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _taps(n_in: int, n_out: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights ``(n_out, P)`` of a Gaussian-then-cubic resize of one axis."""
    if sigma > 0.0:
        radius = math.ceil(2.0 * sigma)
        k = np.arange(-radius, radius + 1, dtype=np.float64)
        gauss = np.exp(-0.5 * (k / sigma) ** 2)
        gauss /= gauss.sum()
    else:
        radius = 0
        gauss = np.ones(1)
    centre = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    left = np.floor(centre - 2.0).astype(np.int64) - radius
    index = left[:, None] + np.arange(2 * radius + 4)[None, :]
    dist = centre[:, None] - index
    weights = np.zeros(index.shape)
    for u, g in zip(range(-radius, radius + 1), gauss, strict=True):
        weights += g * _cubic(dist - u)
    weights /= weights.sum(axis=1, keepdims=True)
    folded = np.mod(index, 2 * n_in)  # symmetric borders: -1 -> 0, n -> n - 1
    folded = np.where(folded >= n_in, 2 * n_in - 1 - folded, folded)
    return folded, weights


def resize_weight_map(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``(C, H, W)`` weight planes to ``(C, height, width)`` float32, as pyflowreg
    resizes its weight map for a pyramid level (see the module's docstring), clipped at 0."""
    n_ch, src_h, src_w = planes.shape
    scale = min(height / src_h, width / src_w)
    sigma = 0.6 / scale if scale < 1.0 else 0.0
    xi, xw = _taps(src_w, width, sigma)
    yi, yw = _taps(src_h, height, sigma)
    src = planes.astype(np.float64)
    rows = np.zeros((n_ch, src_h, width))
    for p in range(xi.shape[1]):
        rows += src[:, :, xi[:, p]] * xw[:, p]
    out = np.zeros((n_ch, height, width))
    for p in range(yi.shape[1]):
        out += rows[:, yi[:, p], :] * yw[:, p, None]
    return np.maximum(out, 0.0).astype(np.float32)


def level_weight(weight: np.ndarray, height: int, width: int) -> np.ndarray:
    """The ``(C, H, W)`` map ``weight`` at a pyramid level of ``height x width``: itself
    (float32) at its own size, else :func:`resize_weight_map` of it (each level is resized
    from the full-resolution map, not from the level above)."""
    if weight.shape[1:] == (height, width):
        return np.ascontiguousarray(weight, dtype=np.float32)
    return resize_weight_map(weight, height, width)
