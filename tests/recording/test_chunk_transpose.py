"""The transposition of a decoded chunk into a channels-first block (``transpose_into``)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labsession.recording._chunks import transpose_into

DTYPES = ["<f4", "<f8", "<i2", "<u2", "<i4", "<i8", "u1", "?", "<c8", "<c16", "<f2"]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_equals_numpy_for_every_dtype_size_and_column_range(data):
    """Bit for bit ``src.T``, written only into the column range it is given (any dtype: the
    OpenCV path moves bytes through a same-size type; sizes it has no type for use numpy)."""
    dtype = np.dtype(data.draw(st.sampled_from(DTYPES)))
    rows = data.draw(st.integers(1, 70))
    channels = data.draw(st.integers(1, 9))
    src = data.draw(hnp.arrays(dtype, (rows, channels)))
    width = data.draw(st.integers(rows, rows + 40))
    offset = data.draw(st.integers(0, width - rows))
    sentinel = np.frombuffer(bytes([0xA5]) * (channels * width * dtype.itemsize), dtype)
    block = sentinel.reshape(channels, width).copy()
    transpose_into(block[:, offset : offset + rows], src)
    expected = sentinel.reshape(channels, width).copy()
    expected[:, offset : offset + rows] = src.T
    assert block.tobytes() == expected.tobytes()  # NaN payloads included


@pytest.mark.parametrize("dtype", ["<f4", "<i2", "<f8"])
def test_a_real_chunk_into_a_block_equals_numpy(dtype):
    """A chunk of 2,048 rows x 64 channels (512 kB at float32) into the middle of a block."""
    rng = np.random.default_rng(3)
    src = (rng.standard_normal((2048, 64)) * 1000).astype(dtype)
    block = np.zeros((64, 3 * 2048), dtype=dtype)
    transpose_into(block[:, 2048:4096], src)
    np.testing.assert_array_equal(block[:, 2048:4096], src.T)
    assert not block[:, :2048].any()
    assert not block[:, 4096:].any()
