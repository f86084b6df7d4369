"""Spatial weight maps of the data term (pyflowreg's 2-D / 3-D ``weight``)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from labsession.errors import ConfigError
from labsession.motion import OFOptions, compensate_arr, get_displacement
from labsession.motion._weight_maps import data_weight, level_weight, resize_weight_map
from labsession.motion.synthetic import shift_image, textured_image


def _two_motions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two channels whose left half moves by u = +1.5 and right half by u = -1.5; and a
    mask of the left half."""
    a, b = textured_image(seed=6), textured_image(seed=7)
    ref = np.stack([a, b], axis=-1)
    plus = np.stack([shift_image(a, u=1.5, v=0.0), shift_image(b, u=1.5, v=0.0)], axis=-1)
    minus = np.stack([shift_image(a, u=-1.5, v=0.0), shift_image(b, u=-1.5, v=0.0)], axis=-1)
    left = np.arange(64)[None, :] < 32
    mov = np.where(left[..., None], plus, minus)
    return ref, mov, np.broadcast_to(left, (64, 64))


def test_a_map_that_zeroes_half_the_data_term_lets_smoothness_fill_that_half_in():
    ref, mov, left = _two_motions()
    plain = get_displacement(ref, mov, OFOptions())
    masked = get_displacement(ref, mov, OFOptions(weight=left.astype(float)))  # (H, W)
    # both see the left half's motion where the data term is kept
    assert abs(plain[8:-8, 8:24, 0].mean() - 1.5) < 0.1
    assert abs(masked[8:-8, 8:24, 0].mean() - 1.5) < 0.1
    # without data on the right, the right half follows the left half's flow, not its own
    assert plain[8:-8, 40:56, 0].mean() < -1.3
    assert masked[8:-8, 40:56, 0].mean() > 0.5
    # an (H, W, C) map that keeps the right half in one channel finds its motion again
    maps = np.stack([left, np.ones_like(left)], axis=-1).astype(float)
    one_channel = get_displacement(ref, mov, OFOptions(weight=maps))
    assert one_channel[8:-8, 40:56, 0].mean() < -1.3


@pytest.mark.parametrize("constancy", ["gc", "gray"])
def test_a_map_constant_in_each_channel_gives_the_per_channel_flow_bit_for_bit(constancy):
    ref, mov, _ = _two_motions()
    planes = np.stack([np.full((64, 64), 0.3), np.full((64, 64), 0.7)], axis=-1)
    vector = get_displacement(
        ref, mov, OFOptions(weight=[0.3, 0.7], constancy_assumption=constancy)
    )
    mapped = get_displacement(ref, mov, OFOptions(weight=planes, constancy_assumption=constancy))
    assert np.array_equal(vector, mapped)


def test_data_weight_passes_per_channel_weights_and_reduces_constant_maps():
    vector = np.array([0.25, 0.75], np.float32)
    assert data_weight(OFOptions(weight=[1.0, 3.0]), vector, 2, 8, 8) is vector
    constant = data_weight(OFOptions(weight=np.full((8, 8), 2.0)), vector, 2, 8, 8)
    np.testing.assert_array_equal(constant, [2.0, 2.0])  # as given, not normalised (pyflowreg)
    plane = np.linspace(0.0, 1.0, 64).reshape(8, 8)
    spatial = data_weight(OFOptions(weight=plane), vector, 2, 8, 8)
    assert spatial.shape == (2, 8, 8)
    assert spatial.dtype == np.float32
    np.testing.assert_allclose(spatial[1], plane, rtol=1e-6)


def test_a_map_of_another_size_is_refused_and_a_binned_one_is_binned():
    plane = np.linspace(0.0, 1.0, 64 * 48).reshape(64, 48)
    with pytest.raises(ConfigError, match="spatial map of 64x48 pixels, but the frames are 32x32"):
        data_weight(OFOptions(weight=plane), np.ones(1, np.float32), 1, 32, 32)
    binned = data_weight(OFOptions(weight=plane, bin_size=2), np.ones(1, np.float32), 1, 32, 24)
    np.testing.assert_allclose(binned[0], plane.reshape(32, 2, 24, 2).mean(axis=(1, 3)), rtol=1e-6)
    # end to end: compensate_arr bins the frames and the map alike
    ref, mov, left = _two_motions()
    opts = OFOptions(weight=left.astype(float), bin_size=2, levels=3)
    _, w = compensate_arr(mov[None], ref, opts)
    assert w.shape == (1, 32, 32, 2)


def _fused_gauss_cubic_as_pyflowreg(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """pyflowreg's ``imresize_fused_gauss_cubic`` of a 2-D image, written out pixel by pixel."""

    def cubic(x: float) -> float:
        a, x = -0.75, abs(x)
        if x < 1.0:
            return (a + 2.0) * x**3 - (a + 3.0) * x**2 + 1.0
        return a * x**3 - 5.0 * a * x**2 + 8.0 * a * x - 4.0 * a if x < 2.0 else 0.0

    def reflect(j: int, n: int) -> int:
        while j < 0 or j >= n:
            j = -j - 1 if j < 0 else 2 * n - 1 - j
        return j

    scale = min(out_h / image.shape[0], out_w / image.shape[1])
    sigma = 0.6 / scale if scale < 1.0 else 0.0

    def tables(n_in: int, n_out: int) -> np.ndarray:
        radius = int(np.ceil(2.0 * sigma)) if sigma > 0 else 0
        g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2) if sigma > 0 else [1.0]
        g = np.asarray(g) / np.sum(g)
        matrix = np.zeros((n_out, n_in))
        for i in range(n_out):
            x = (i + 0.5) / (n_out / n_in) - 0.5
            left = int(np.floor(x - 2.0)) - radius
            taps = [
                sum(g[u + radius] * cubic(x - (left + p) - u) for u in range(-radius, radius + 1))
                for p in range(2 * radius + 4)
            ]
            for p, tap in enumerate(taps):
                matrix[i, reflect(left + p, n_in)] += tap / sum(taps)
        return matrix

    return tables(image.shape[0], out_h) @ image @ tables(image.shape[1], out_w).T


def test_the_map_is_resized_to_each_level_as_pyflowreg_does():
    rng = np.random.default_rng(2)
    planes = rng.random((2, 40, 60))
    np.testing.assert_array_equal(level_weight(planes, 40, 60), planes.astype(np.float32))
    for height, width in ((32, 48), (20, 30), (7, 9)):
        resized = level_weight(planes, height, width)
        assert resized.shape == (2, height, width)
        for c in range(2):
            expected = _fused_gauss_cubic_as_pyflowreg(planes[c], height, width)
            np.testing.assert_allclose(resized[c], np.maximum(expected, 0.0), atol=1e-6)
    # a step: blurred, and clipped at 0 where the cubic kernel overshoots
    step = np.zeros((1, 40, 60))
    step[:, :, 30:] = 1.0
    small = resize_weight_map(step, 32, 48)  # one level of eta = 0.8
    assert small.min() == 0.0
    assert _fused_gauss_cubic_as_pyflowreg(step[0], 32, 48).min() < 0.0
    np.testing.assert_allclose(small[0, :, -8:], 1.0, atol=1e-2)
    assert 0.05 < small[0, 10, 23] < 0.95


def test_only_backends_without_spatial_weights_warn(caplog):
    plane = np.linspace(0.1, 1.0, 16).reshape(4, 4)
    with caplog.at_level(logging.WARNING, logger="labsession.motion"):
        for backend in ("flowreg", "flowreg_torch", "torch"):
            OFOptions(weight=plane, flow_backend=backend).channel_weights(2)
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="labsession.motion"):
        OFOptions(weight=plane, flow_backend="diso").channel_weights(2)
    assert "flow_backend 'diso' uses each channel's mean weight" in caplog.text
