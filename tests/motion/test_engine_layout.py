"""The flowreg engine's data paths: threads and layouts change no number.

Frame-by-frame preprocessing, the flows and the final warp run on blocks of frames that threads
take in turn, the flow kernels write their flows channel last straight into the backend's
output: each is checked here against the plain computation (the 5x5 median's tiles in
``test_fast_paths``).
"""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest

from labsession.motion import OFOptions, compensate_arr
from labsession.motion._backends import frame_blocks, map_frame_blocks
from labsession.motion._flowreg_batch import FlowPlan
from labsession.motion._image_kernels import interleave_flow


def test_interleave_flow_is_moveaxis():
    rng = np.random.default_rng(4)
    u = rng.normal(size=(3, 5, 7)).astype(np.float32)
    v = rng.normal(size=(3, 5, 7)).astype(np.float32)
    out = np.full((3, 5, 7, 2), np.nan, dtype=np.float32)
    interleave_flow(u, v, out)
    np.testing.assert_array_equal(out, np.stack([u, v], axis=-1))


def test_flow_plan_writes_the_same_flows_channel_last(small_video):
    scale = small_video.reference.max()
    fixed = np.ascontiguousarray(np.moveaxis(small_video.reference / scale, -1, 0), np.float32)
    moving = np.ascontiguousarray(np.moveaxis(small_video.video[:3] / scale, -1, 1), np.float32)
    init = np.zeros((1, 2, 64, 64), dtype=np.float32)
    index = np.zeros(3, dtype=np.int64)
    weight = np.full(2, 0.5, dtype=np.float32)
    params = (1.5, 1.5, 0.8, 100, 6, 20, 5, 0.45, 1.0, "gc")
    plan = FlowPlan(fixed, weight, *params)
    planes = np.full((3, 2, 64, 64), np.nan, dtype=np.float32)
    plan.run(moving, init, index, planes, channel_last=False)
    out = np.full((3, 64, 64, 2), np.nan, dtype=np.float32)
    plan.run(moving, init, index, out)
    assert np.abs(planes).max() > 0.1  # real flows, not zeros
    np.testing.assert_array_equal(out, np.moveaxis(planes, 1, -1))


@pytest.mark.parametrize(
    "options",
    [
        {"quality_setting": "fast"},
        # temporal smoothing: preprocessed as one video, not frame by frame
        {"quality_setting": "fast", "sigma": [[1.0, 1.0, 0.5], [1.0, 1.0, 0.5]]},
        {"quality_setting": "fast", "flow_backend": "diso"},
    ],
)
def test_compensate_arr_same_on_one_thread_and_on_all(small_video, options):
    opts = OFOptions(**options)
    video = small_video.video[:7]
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        registered_one, w_one = compensate_arr(video, small_video.reference, opts)
    finally:
        numba.set_num_threads(threads)
    registered, w = compensate_arr(video, small_video.reference, opts)
    np.testing.assert_array_equal(w, w_one)
    np.testing.assert_array_equal(registered, registered_one)
    assert np.abs(w).max() > 0.1


@pytest.mark.parametrize(("n", "most"), [(1, None), (7, None), (40, None), (40, 2), (3, 8)])
def test_frame_blocks_cover_the_frames_in_order_for_the_threads_to_share(n, most):
    blocks = frame_blocks(n, most, threads=2)
    assert blocks[0][0] == 0
    assert blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    sizes = [stop - start for start, stop in blocks]
    assert min(sizes) >= 1
    assert most is None or max(sizes) <= most
    # several blocks per thread, so that one falling behind takes fewer of them
    assert len(blocks) >= min(n, 8)
    assert frame_blocks(n, threads=1) == [(0, n)]
    done = []

    def record(start, stop):
        done.append(start)
        return (start, stop)

    # on this machine's threads: every block once, the results in block order
    expected = frame_blocks(n, most)
    assert map_frame_blocks(record, n, most) == expected
    assert sorted(done) == [start for start, _ in expected]
