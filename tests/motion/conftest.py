"""Fixtures of the motion tests: small seeded videos with known motion."""

from __future__ import annotations

import pytest

from labsession.motion.synthetic import make_2p_video


@pytest.fixture(scope="session")
def small_video():
    """20 frames of 64x64, 2 channels, seeded, with non-rigid ground-truth motion."""
    return make_2p_video(n_frames=20, shape=(64, 64), seed=1)
