"""flowreg_torch's census data term and spatial weight maps agree with the numba backend's."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from labsession.motion import OFOptions, get_displacement
from labsession.motion._flowreg_kernels import motion_tensor_cs
from labsession.motion.synthetic import endpoint_error, shift_image, textured_image

if os.environ.get("LABSESSION_REQUIRE_TORCH") == "1":  # set by .ci/run: no silent skip there
    import torch
else:
    torch = pytest.importorskip("torch", reason="the 'torch' extra is not installed")


def _torch_options(**fields) -> OFOptions:
    return OFOptions(flow_backend="flowreg_torch", backend_params={"device": "cpu"}, **fields)


def test_census_tensor_equals_the_numba_kernels():
    from labsession.motion._flowreg_torch import TorchFlowregBackend

    rng = np.random.default_rng(0)
    f1, f2 = (gaussian_filter(rng.random((20, 30)), 1.5).astype(np.float32) for _ in range(2))
    backend = TorchFlowregBackend(_torch_options(constancy_assumption="cs"))
    parts = backend._tensor(
        torch.from_numpy(f1)[None, None], torch.from_numpy(f2)[None, None], 1.5, 1.25, "cs"
    )
    expected = motion_tensor_cs(f1[None], f2[None, None], 1.5, 1.25)[0, :, 0]
    for part, numba_part in zip(parts, expected, strict=True):
        np.testing.assert_allclose(part[0, 0].numpy(), numba_part, rtol=1e-4, atol=1e-5)
    assert np.abs(expected).max() > 0.1


def test_census_flow_matches_the_numba_backend():
    ref = textured_image(seed=3)
    mov = shift_image(ref, u=1.6, v=-2.3)
    truth = np.broadcast_to(np.array([1.6, -2.3], np.float32), (64, 64, 2))
    w_numba = get_displacement(ref, mov, OFOptions(constancy_assumption="cs"))
    w_torch = get_displacement(ref, mov, _torch_options(constancy_assumption="cs"))
    assert endpoint_error(w_torch, truth) < 0.35
    # red-black instead of lexicographic SOR: close, not equal
    assert endpoint_error(w_torch, w_numba) < 0.1


def test_a_weight_map_on_torch_acts_as_on_numba():
    a, b = textured_image(seed=6), textured_image(seed=7)
    ref = np.stack([a, b], axis=-1)
    plus = np.stack([shift_image(a, u=1.5, v=0.0), shift_image(b, u=1.5, v=0.0)], axis=-1)
    minus = np.stack([shift_image(a, u=-1.5, v=0.0), shift_image(b, u=-1.5, v=0.0)], axis=-1)
    left = np.broadcast_to(np.arange(64)[None, :] < 32, (64, 64))
    mov = np.where(left[..., None], plus, minus)
    masked = get_displacement(ref, mov, _torch_options(weight=left.astype(float)))
    assert abs(masked[8:-8, 8:24, 0].mean() - 1.5) < 0.1
    assert masked[8:-8, 40:56, 0].mean() > 0.5  # filled in from the left half
    w_numba = get_displacement(ref, mov, OFOptions(weight=left.astype(float)))
    assert endpoint_error(masked, w_numba) < 0.15
    # a map constant in each channel is the per-channel case
    planes = np.stack([np.full((64, 64), 0.3), np.full((64, 64), 0.7)], axis=-1)
    vector = get_displacement(ref, mov, _torch_options(weight=[0.3, 0.7]))
    np.testing.assert_array_equal(get_displacement(ref, mov, _torch_options(weight=planes)), vector)
