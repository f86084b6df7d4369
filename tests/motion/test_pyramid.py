"""The ``flowreg`` backend's image pyramid: bicubic levels, and the accuracy they buy.

A level is the level above it blurred by a Gaussian and resized. Resized bilinearly, a level
was blurrier than its Gaussian alone (a linear interpolation at a fraction ``f`` of a pixel
averages two pixels), and on the benchmark's synthetic 2-photon videos the endpoint error at
``balanced`` was 1.03x pyflowreg's, whose levels are bicubic (Keys' cubic, as OpenCV's). Issue 19
asks for at most 1.02x.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labsession.motion import OFOptions, compensate_arr
from labsession.motion._flowreg_batch import _pyramid
from labsession.motion._image_kernels import _bicubic, resize_cubic
from labsession.motion.synthetic import endpoint_error, make_2p_video

_ETA = 0.8
#: The pyramid's Gaussian between two levels (OFOptions' eta 0.8), in pixels of the finer one.
_SIGMA = 0.6 * math.sqrt(1.0 / _ETA**2 - 1.0)


@pytest.mark.parametrize("period", [5.0, 8.0, 12.0])
def test_a_level_is_no_blurrier_than_its_gaussian(period):
    """A cosine across the frame comes out of one pyramid step with the amplitude that the
    Gaussian leaves it (``exp(-2 pi^2 sigma^2 / period^2)``), not less: the resize adds no
    blur of its own (bilinear levels kept 92 % of it at a 5 px period, 96 % at 8 px)."""
    n, m = 100, 80
    phase = 0.3
    x = np.arange(n)
    image = np.broadcast_to(np.cos(2 * np.pi * x / period + phase), (n, n)).astype(np.float32)
    level = _pyramid(np.ascontiguousarray(image[None]), [(n, n), (m, m)], _SIGMA)[1][0]
    # centres of the level's pixels in the frame's pixels; border columns left out
    xs = ((np.arange(m) + 0.5) * n / m - 0.5)[5:-5]
    basis = np.stack(
        [np.cos(2 * np.pi * xs / period + phase), np.sin(2 * np.pi * xs / period + phase)], 1
    )
    coef = np.linalg.lstsq(basis, level[m // 2, 5:-5].astype(np.float64), rcond=None)[0]
    gaussian = math.exp(-2 * math.pi**2 * _SIGMA**2 / period**2)
    ratio = float(np.hypot(*coef)) / gaussian
    assert 0.99 < ratio < 1.1, ratio


@pytest.mark.parametrize(
    ("src", "dst"),
    [((40, 33), (31, 41)), ((64, 64), (51, 51)), ((9, 7), (7, 5)), ((21, 17), (52, 40))],
)
def test_resize_cubic_equals_pointwise_bicubic(src, dst):
    """``resize_cubic`` (rows along y first, single precision) gives the pointwise bicubic
    interpolation when it shrinks (the pyramid), enlarges (the final flow) or both."""
    images = np.random.default_rng(4).random((2, *src)).astype(np.float32)
    height, width = dst
    sy, sx = src[0] / height, src[1] / width
    expected = np.array(
        [
            [
                [_bicubic(image, (y + 0.5) * sy - 0.5, (x + 0.5) * sx - 0.5) for x in range(width)]
                for y in range(height)
            ]
            for image in images
        ]
    )
    np.testing.assert_allclose(resize_cubic(images, height, width), expected, atol=2e-6)


def test_balanced_endpoint_error_within_issue_19s_bound():
    """The benchmark's video at 128x128 (``benchmarks/motion_bench.py``: seed = size), 24
    frames: pyflowreg 0.1.0a9 (OpenCV 5.1) measured 0.2032 px at ``balanced``, so issue 19's
    bound is 1.02x that; bilinear levels gave 0.2096 px, bicubic ones 0.2016 px. ``fast``
    (coarser) stays within 1.5x of ``balanced``."""
    data = make_2p_video(n_frames=24, shape=(128, 128), seed=128)
    errors = {}
    for preset in ("balanced", "fast"):
        _, w = compensate_arr(data.video, data.reference, OFOptions(quality_setting=preset))
        errors[preset] = endpoint_error(w, data.w)
    assert errors["balanced"] <= 1.02 * 0.2032, errors
    assert errors["fast"] <= 1.5 * errors["balanced"], errors
