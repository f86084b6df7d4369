"""Valid masks: in-view test, binary warping, batch masks, temporal AND from a file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from labsession.motion.session import (
    backward_valid_mask,
    compute_batch_valid_masks,
    imregister_binary,
    temporal_valid_mask,
)
from labsession.motion.warping import valid_masks


def test_backward_valid_mask_integer_and_subpixel_shifts() -> None:
    u = np.full((6, 8), 2.0)
    v = np.full((6, 8), -1.5)
    mask = backward_valid_mask(u, v)
    assert mask.dtype == bool
    expected = np.zeros((6, 8), dtype=bool)
    expected[2:, :6] = True  # x + 2 <= 7 -> x <= 5; y - 1.5 >= 0 -> y >= 2
    np.testing.assert_array_equal(mask, expected)


def test_backward_valid_mask_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="of one shape"):
        backward_valid_mask(np.zeros((4, 4)), np.zeros((4, 5)))


def test_imregister_binary_moves_the_mask_and_drops_outside() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[4:6, 4:6] = True
    u = np.full((10, 10), 3.0)
    v = np.full((10, 10), -2.0)
    out = imregister_binary(mask, u, v)
    expected = np.zeros((10, 10), dtype=bool)
    expected[6:8, 1:3] = True  # out[y, x] = mask[y - 2, x + 3]
    np.testing.assert_array_equal(out, expected)
    full = imregister_binary(np.ones((10, 10)), u, v)
    np.testing.assert_array_equal(full, backward_valid_mask(u, v))


def test_compute_batch_valid_masks_matches_the_engine() -> None:
    rng = np.random.default_rng(0)
    w = rng.uniform(-3, 3, size=(4, 12, 14, 2)).astype(np.float32)
    batch = compute_batch_valid_masks(w)
    assert batch.dtype == np.uint8
    assert set(np.unique(batch)) <= {0, 255}
    np.testing.assert_array_equal(batch > 0, valid_masks(w))
    with pytest.raises(ValueError, match=r"\(T, H, W, 2\)"):
        compute_batch_valid_masks(w[0])


def test_temporal_valid_mask_reads_in_chunks(tmp_path: Path) -> None:
    masks = np.ones((7, 5, 6, 1), dtype=np.uint8)
    masks[2, 0, 0] = 0
    masks[6, 4, 5] = 0
    with h5py.File(tmp_path / "idx.hdf", "w") as f:
        f["valid"] = masks
    out = temporal_valid_mask(tmp_path / "idx.hdf", chunk=3)
    expected = np.ones((5, 6), dtype=bool)
    expected[0, 0] = expected[4, 5] = False
    np.testing.assert_array_equal(out, expected)
