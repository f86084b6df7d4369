"""Valid-pixel masks of the session pipeline.

The per-frame tests (``backward_valid_mask``, ``imregister_binary``,
``compute_batch_valid_masks``, named as in pyflowreg's ``core.warping``) live in
:mod:`labsession.motion.warping`; this module adds the temporal AND over a mask video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labsession.motion.warping import (
    backward_valid_mask,
    compute_batch_valid_masks,
    imregister_binary,
)

__all__ = [
    "backward_valid_mask",
    "compute_batch_valid_masks",
    "imregister_binary",
    "temporal_valid_mask",
]


def temporal_valid_mask(path: Path, *, chunk: int = 256) -> np.ndarray:
    """AND over time of a per-frame mask video (``idx.hdf``), read ``chunk`` frames at a time.

    Parameters
    ----------
    path
        Mask video ``(T, H, W[, C])``; values > 0 are valid (only channel 0 is used).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool: True where every frame is valid.
    """
    from labsession.motion import open_video

    with open_video(path) as reader:
        n_frames, height, width, _ = reader.shape
        out = np.ones((height, width), dtype=bool)
        for start in range(0, n_frames, chunk):
            out &= (reader[start : start + chunk][..., 0] > 0).all(axis=0)
    return out
