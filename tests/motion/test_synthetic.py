"""The synthetic 2-photon generator: seeded, shaped, and its ground truth is exact."""

from __future__ import annotations

import numpy as np
import pytest

from labsession.motion.synthetic import make_2p_video
from labsession.motion.warping import warp_video


def test_seeded_and_shaped():
    a = make_2p_video(n_frames=6, shape=(32, 48), seed=3)
    b = make_2p_video(n_frames=6, shape=(32, 48), seed=3)
    c = make_2p_video(n_frames=6, shape=(32, 48), seed=4)
    assert a.video.shape == (6, 32, 48, 2)
    assert a.w.shape == (6, 32, 48, 2)
    assert a.reference.shape == (32, 48, 2)
    assert a.video.dtype == np.float32
    np.testing.assert_array_equal(a.video, b.video)
    assert not np.array_equal(a.video, c.video)
    assert make_2p_video(n_frames=2, shape=(32, 32), n_channels=1).video.shape[-1] == 1


def test_ground_truth_warps_frames_back_onto_the_scene():
    s = make_2p_video(n_frames=5, shape=(48, 48), photons=1e6, seed=0)
    back = warp_video(s.video, s.w, interpolation="cubic")
    err = np.abs(back - s.scene)[:, 6:-6, 6:-6].mean()
    moved = np.abs(s.video - s.scene)[:, 6:-6, 6:-6].mean()
    assert err < 0.1 * moved


def test_motion_has_drift_jitter_and_nonrigid_parts():
    s = make_2p_video(n_frames=30, shape=(64, 64), drift=4.0, nonrigid=1.0, seed=2)
    spatial_spread = s.w.std(axis=(1, 2)).mean()
    assert spatial_spread > 0.1  # non-rigid
    assert np.abs(s.w.mean(axis=(1, 2))).max() > 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_channels"):
        make_2p_video(n_channels=3)
    with pytest.raises(ValueError, match="16x16"):
        make_2p_video(shape=(8, 8))
