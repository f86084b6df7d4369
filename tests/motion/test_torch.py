"""flowreg_torch matches the numba backend within the documented tolerance (0.05 px mean)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from labsession.errors import ConfigError
from labsession.motion import OFOptions, compensate_arr, get_displacement
from labsession.motion.synthetic import endpoint_error, shift_image, textured_image

if os.environ.get("LABSESSION_REQUIRE_TORCH") == "1":  # set by .ci/run: no silent skip there
    import torch
else:
    torch = pytest.importorskip("torch", reason="the 'torch' extra is not installed")


def test_rigid_shift_on_cpu():
    ref = textured_image(seed=3)
    mov = shift_image(ref, u=1.6, v=-2.3)
    opts = OFOptions(flow_backend="flowreg_torch", backend_params={"device": "cpu"})
    w = get_displacement(ref, mov, opts)
    truth = np.broadcast_to(np.array([1.6, -2.3], np.float32), w.shape)
    assert endpoint_error(w, truth) < 0.1


def test_matches_numba_backend(small_video):
    video = small_video.video[:6]
    results = {}
    for backend in ("flowreg", "flowreg_torch"):
        opts = OFOptions(flow_backend=backend, quality_setting="balanced", a_smooth=0.8)
        _, results[backend] = compensate_arr(video, small_video.reference, opts)
    assert endpoint_error(results["flowreg"], results["flowreg_torch"]) < 0.05
    assert endpoint_error(results["flowreg_torch"], small_video.w[:6]) < 0.4


def test_unknown_params_are_rejected():
    with pytest.raises(ConfigError, match="unknown backend_params for flowreg_torch"):
        get_displacement(
            np.ones((16, 16)),
            np.ones((16, 16)),
            OFOptions(flow_backend="flowreg_torch", backend_params={"gpu": True}),
        )
