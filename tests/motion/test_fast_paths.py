"""Fast code paths agree with their plain definitions: numba kernels, the diso channel mix."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.ndimage import correlate1d

from labsession.motion import OFOptions
from labsession.motion._backends import FlowregBackend
from labsession.motion._compensate import _Engine
from labsession.motion._image_kernels import (
    _MEDIAN_TILE,
    _MERGE55,
    _MERGE55_OUT,
    _SORT5,
    _WINDOW,
    _WINDOW_OUT,
    _bicubic,
    _gauss_kernel,
    blur_channels,
    median5,
    resize_cubic,
    resize_plane,
)
from labsession.motion._preprocess import intensity_range, preprocess, preprocess_mix
from labsession.motion.synthetic import endpoint_error


def _median5_reference(field: np.ndarray) -> np.ndarray:
    padded = np.pad(field, 2, mode="reflect")  # mirrored without repeating the edge
    windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
    return np.median(windows.reshape(*field.shape, 25), axis=-1).astype(np.float32)


@pytest.mark.parametrize(
    "shape",
    [
        (6, 6),
        (7, 11),
        (33, 40),
        (1, 1),
        (2, 3),
        (4, 2),
        (5, _MEDIAN_TILE + 37),
        (9, _MEDIAN_TILE + 1),  # rows wider than a tile: tiles of a row
        (5, 2 * _MEDIAN_TILE + 44),
    ],
)
def test_median5_equals_sort_based_median(shape):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=shape).astype(np.float32)
    ties = np.round(2 * noise).astype(np.float32)  # many equal values
    stack = np.stack([noise, ties])  # the kernel filters each field of a stack
    filtered = median5(stack)
    for field, result in zip(stack, filtered, strict=True):
        np.testing.assert_array_equal(result, _median5_reference(field))


# Values with many ties, both zeros among them. A window holding -0.0 and 0.0 may give either as
# its median (they compare equal, so np.median and the kernel's networks each keep one by its
# position): assert_array_equal compares with ==, so zeros of either sign match and every other
# value must match bit for bit. The flow increment is 0 either way.
_FIELD_VALUES = st.one_of(
    st.sampled_from([-0.0, 0.0, 1.0, -1.0, 0.5, 2.0]),
    st.floats(-1e6, 1e6, width=32, allow_subnormal=False),
)


@settings(max_examples=200, deadline=None)
@given(
    fields=st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40)).flatmap(
        lambda shape: hnp.arrays(np.float32, shape, elements=_FIELD_VALUES)
    )
)
def test_median5_equals_sort_based_median_on_any_field(fields):
    filtered = median5(fields)
    for field, result in zip(fields, filtered, strict=True):
        np.testing.assert_array_equal(result, _median5_reference(field))


def _run_network(ops, wires):
    """Apply comparators ``(a, b)`` / ``(a, b, kind)`` to 0-1 inputs, one row per wire."""
    wires = wires.copy()
    for a, b, *kind in ops:
        lo, hi = np.minimum(wires[a], wires[b]), np.maximum(wires[a], wires[b])
        if kind != [2]:
            wires[a] = lo
        if kind != [1]:
            wires[b] = hi
    return wires


def _sorted_runs(*lengths):
    """Every 0-1 input made of sorted runs of these lengths (one row per wire, one column per
    input), and its number of ones."""
    ones = np.array(list(itertools.product(*(range(n + 1) for n in lengths))))
    runs = [np.arange(n)[:, None] >= n - ones[:, j] for j, n in enumerate(lengths)]
    return np.concatenate(runs).astype(np.int8), ones.sum(axis=1)


def test_median_networks_select_the_median_of_every_zero_one_input():
    """By the 0-1 principle (min and max commute with any threshold), a min/max network that is
    right on every 0-1 input of a kind is right on every real input of that kind: the column sort
    on any 5 values, the merge on two sorted columns, the window's selection on two merged pairs
    and a sorted column; together, median5's median of any 25 values."""
    wires, _ = _sorted_runs(1, 1, 1, 1, 1)  # all 32 inputs
    np.testing.assert_array_equal(_run_network(_SORT5, wires), np.sort(wires, axis=0))
    wires, _ = _sorted_runs(5, 5)
    merged = _run_network(_MERGE55, wires)[list(_MERGE55_OUT)]
    np.testing.assert_array_equal(merged, np.sort(wires, axis=0))
    wires, ones = _sorted_runs(10, 10, 5)
    median = _run_network(_WINDOW, wires)[_WINDOW_OUT]
    np.testing.assert_array_equal(median, (ones >= 13).astype(np.int8))


@pytest.mark.parametrize("sigma", [0.45, 1.0, 2.5])
def test_blur_channels_matches_separable_correlation(sigma):
    images = np.random.default_rng(2).random((2, 23, 31)).astype(np.float32)
    kernel = _gauss_kernel(sigma).astype(np.float64)
    expected = correlate1d(images.astype(np.float64), kernel, axis=2, mode="nearest")
    expected = correlate1d(expected, kernel, axis=1, mode="nearest")
    np.testing.assert_allclose(blur_channels(images, sigma), expected, atol=1e-5)


@pytest.mark.parametrize(("src", "dst"), [((21, 17), (52, 40)), ((40, 33), (31, 26))])
def test_resizes_match_pointwise_interpolation(src, dst):
    image = np.random.default_rng(3).random(src).astype(np.float32)
    height, width = dst
    sy, sx = src[0] / height, src[1] / width
    cubic = np.array(
        [
            [_bicubic(image, (y + 0.5) * sy - 0.5, (x + 0.5) * sx - 0.5) for x in range(width)]
            for y in range(height)
        ]
    )
    np.testing.assert_allclose(resize_cubic(image[None], height, width)[0], cubic, atol=1e-5)
    ys = np.clip((np.arange(height) + 0.5) * sy - 0.5, 0, src[0] - 1)
    xs = np.clip((np.arange(width) + 0.5) * sx - 0.5, 0, src[1] - 1)
    rows = np.array([np.interp(xs, np.arange(src[1]), row) for row in image])
    linear = np.array([np.interp(ys, np.arange(src[0]), col) for col in rows.T]).T
    np.testing.assert_allclose(resize_plane(image, height, width), linear, atol=1e-5)


def test_flowreg_broadcast_initial_flow_equals_a_full_one(small_video):
    backend = FlowregBackend(OFOptions(quality_setting="fast"))
    opts = OFOptions()
    ref = preprocess(
        small_video.reference.astype(np.float32),
        low=np.zeros(2, np.float32),
        high=np.full(2, small_video.reference.max(), np.float32),
        sigma=opts.channel_sigma(2),
    )
    frames = preprocess(
        small_video.video[:4].astype(np.float32),
        low=np.zeros(2, np.float32),
        high=np.full(2, small_video.reference.max(), np.float32),
        sigma=opts.channel_sigma(2),
    )
    weight = opts.channel_weights(2)
    shared = np.broadcast_to(small_video.w[:2].mean(axis=0), (4, 64, 64, 2))
    broadcast = backend(ref, frames, weight=weight, w_init=shared)
    full = backend(ref, frames, weight=weight, w_init=np.ascontiguousarray(shared))
    np.testing.assert_array_equal(broadcast, full)
    assert broadcast.shape == (4, 64, 64, 2)


def _preprocess_reference(frames, low, high, sigma):
    """Normalise (broadcast over channels), then blur each channel plane on its own."""
    scale = np.where(high - low > 0, high - low, 1.0).astype(np.float32)
    out = ((frames - low) / scale).astype(np.float32)
    for t in range(out.shape[0]):
        for c in range(out.shape[-1]):
            sx, sy, _ = sigma[c]
            if sx > 0 or sy > 0:
                ksize = (2 * int(4.0 * sx + 0.5) + 1, 2 * int(4.0 * sy + 0.5) + 1)
                out[t, ..., c] = cv2.GaussianBlur(
                    np.ascontiguousarray(out[t, ..., c]),
                    ksize,
                    sigmaX=max(sx, 1e-6),
                    sigmaY=max(sy, 1e-6),
                    borderType=cv2.BORDER_REFLECT,
                )
    return out


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize(
    "sigma",
    [
        [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0]],  # one sigma for all
        [[1.5, 0.5, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]],  # each channel its own, one none
    ],
)
def test_preprocess_equals_its_plain_definition_bit_for_bit(dtype, sigma):
    rng = np.random.default_rng(11)
    frames = (rng.random((3, 37, 45, 3)) * 900 + 20).astype(dtype)
    low = np.array([20.0, 35.0, 500.0], dtype=np.float32)
    high = np.array([920.0, 700.0, 500.0], dtype=np.float32)  # the last channel is flat
    sigma = np.array(sigma)
    got = preprocess(frames, low=low, high=high, sigma=sigma)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _preprocess_reference(frames, low, high, sigma))
    one = preprocess(frames[1], low=low, high=high, sigma=sigma)  # (H, W, C): one frame
    np.testing.assert_array_equal(one, _preprocess_reference(frames[1:2], low, high, sigma)[0])
    assert frames.dtype == dtype  # the input is left as it was


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_preprocess_writes_into_out_the_numbers_it_returns(dtype):
    rng = np.random.default_rng(12)
    frames = (rng.random((4, 21, 18, 2)) * 900 + 20).astype(dtype)
    low, high = np.array([20.0, 30.0]), np.array([900.0, 800.0])
    sigma = np.array([[1.0, 1.5, 0.0], [0.5, 0.5, 0.0]])
    weight = np.array([0.4, 0.6])
    expected = preprocess(frames, low=low, high=high, sigma=sigma)
    out = np.full((6, *frames.shape[1:]), np.nan, dtype=np.float32)
    # two frames at a time into slices of one array, as the engine's threads write them
    for start in range(0, 4, 2):
        part = out[1 + start : 3 + start]
        got = preprocess(frames[start : start + 2], low=low, high=high, sigma=sigma, out=part)
        assert got is part
    np.testing.assert_array_equal(out[1:5], expected)
    assert np.isnan(out[[0, 5]]).all()  # nothing written outside
    mixed = preprocess_mix(frames, low=low, high=high, weight=weight, sigma=sigma[[0, 0]])
    mix_out = np.empty_like(mixed)
    got = preprocess_mix(
        frames, low=low, high=high, weight=weight, sigma=sigma[[0, 0]], out=mix_out
    )
    assert got is mix_out
    np.testing.assert_array_equal(mix_out, mixed)
    if dtype == np.float32:  # out over the input: written before the later frames are read
        shifted = np.ascontiguousarray(frames[..., :1])
        with pytest.raises(ValueError, match="out must not overlap frames"):
            preprocess_mix(
                shifted, low=low[:1], high=high[:1], weight=weight[:1], sigma=sigma[:1], out=shifted
            )
    for wrong in (
        np.empty(frames.shape, dtype=np.float64),
        np.empty((4, 21, 18, 3), dtype=np.float32),
        np.empty((4, 21, 36, 2), dtype=np.float32)[:, :, ::2],  # not contiguous
    ):
        with pytest.raises(ValueError, match="out must be a C-contiguous float32 array"):
            preprocess(frames, low=low, high=high, sigma=sigma, out=wrong)


@pytest.mark.parametrize("st", [0.1, 1.0])
def test_preprocess_mix_equals_mixing_the_preprocessed_channels(small_video, st):
    ref = small_video.reference.astype(np.float32)
    low, high = intensity_range(ref, separate=True)
    sigma = np.array([[1.5, 1.0, st], [1.5, 1.0, st]])
    weight = np.array([0.3, 0.7])
    video = small_video.video.astype(np.float32)
    expected = preprocess(video, low=low, high=high, sigma=sigma) @ weight
    mixed = preprocess_mix(video, low=low, high=high, weight=weight, sigma=sigma)
    assert mixed.shape == (*video.shape[:3], 1)
    assert mixed.dtype == np.float32
    np.testing.assert_allclose(mixed[..., 0], expected, atol=1e-5)
    single = preprocess_mix(ref, low=low, high=high, weight=weight, sigma=sigma)
    np.testing.assert_allclose(
        single[..., 0], preprocess(ref, low=low, high=high, sigma=sigma) @ weight, atol=1e-5
    )
    with pytest.raises(ValueError, match="same sigma"):
        preprocess_mix(video, low=low, high=high, weight=weight, sigma=[[1, 1, st], [2, 2, st]])


@pytest.mark.parametrize("n_ch", [1, 3, 5])
def test_preprocess_mix_any_channel_count(n_ch):
    rng = np.random.default_rng(4)
    video = rng.random((3, 20, 24, n_ch)).astype(np.float32) * 50 + 10
    low, high = intensity_range(video[0], separate=True)
    sigma = np.tile([1.0, 1.5, 0.1], (n_ch, 1))
    weight = rng.random(n_ch) / n_ch
    expected = preprocess(video, low=low, high=high, sigma=sigma) @ weight
    mixed = preprocess_mix(video, low=low, high=high, weight=weight, sigma=sigma)
    np.testing.assert_allclose(mixed[..., 0], expected, atol=1e-5)


def test_diso_mix_fast_path_gives_the_flow_of_the_general_path(small_video):
    opts = OFOptions(flow_backend="diso", quality_setting="balanced", weight=[0.3, 0.7])
    fast = _Engine(small_video.reference, opts)
    assert fast.mix_only
    general = _Engine(small_video.reference, opts)
    general.mix_only = False
    general.flow_weight = general.weight
    general.reference_proc = general._prep(general.reference)
    assert general.reference_proc.shape[-1] == 2
    registered_fast, w_fast = fast.process(small_video.video)
    registered_general, w_general = general.process(small_video.video)
    assert np.abs(w_fast - w_general).mean() < 0.01
    assert endpoint_error(w_fast, small_video.w) < 1.01 * endpoint_error(w_general, small_video.w)
    np.testing.assert_allclose(registered_fast, registered_general, atol=0.05)


def test_diso_channels_with_different_sigma_use_the_general_path(small_video):
    opts = OFOptions(flow_backend="diso", sigma=[[1.0, 1.0, 0.1], [2.0, 2.0, 0.1]])
    engine = _Engine(small_video.reference, opts)
    assert not engine.mix_only
    assert engine.reference_proc.shape[-1] == 2
