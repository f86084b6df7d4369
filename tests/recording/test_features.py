"""EMG features against their direct definitions, one window and one channel at a time."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labsession.recording import features
from labsession.recording.features import (
    FEATURES,
    feature_matrix,
    mav,
    rms,
    slope_sign_changes,
    waveform_length,
    zero_crossings,
)


def direct(x, threshold=0.0):
    """The textbook loops over one 1-D window (float64)."""
    x = [float(v) for v in x]
    n = len(x)
    return {
        "rms": (sum(v * v for v in x) / n) ** 0.5,
        "mav": sum(abs(v) for v in x) / n,
        "wl": sum(abs(x[i + 1] - x[i]) for i in range(n - 1)),
        "zc": sum(
            1 for i in range(n - 1) if x[i] * x[i + 1] < 0 and abs(x[i] - x[i + 1]) >= threshold
        ),
        "ssc": sum(1 for i in range(1, n - 1) if (x[i] - x[i - 1]) * (x[i] - x[i + 1]) > threshold),
    }


windows_strategy = arrays(
    np.float32,
    st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 30)),
    elements=st.floats(-100, 100, width=32),
)


@given(windows_strategy, st.sampled_from([0.0, 0.5, 3.0]))
def test_features_equal_direct_definitions(windows, threshold):
    got = {
        "rms": rms(windows),
        "mav": mav(windows),
        "wl": waveform_length(windows),
        "zc": zero_crossings(windows, threshold=threshold),
        "ssc": slope_sign_changes(windows, threshold=threshold),
    }
    for name, value in got.items():
        assert value.shape == windows.shape[:2], name
    assert got["zc"].dtype == np.int64
    assert got["ssc"].dtype == np.int64
    assert got["rms"].dtype == np.float64
    for w in range(windows.shape[0]):
        for c in range(windows.shape[1]):
            expected = direct(windows[w, c], threshold)
            for name in ("rms", "mav", "wl"):
                assert got[name][w, c] == pytest.approx(expected[name], rel=1e-9, abs=1e-9), name
            assert got["zc"][w, c] == expected["zc"]
            assert got["ssc"][w, c] == expected["ssc"]


def test_known_values():
    x = np.array([[[1.0, -1.0, 2.0, 2.0, -3.0, 0.0, 1.0]]])
    assert rms(x)[0, 0] == pytest.approx(np.sqrt(20 / 7))
    assert mav(x)[0, 0] == pytest.approx(10 / 7)
    assert waveform_length(x)[0, 0] == pytest.approx(2 + 3 + 0 + 5 + 3 + 1)
    # -1 -> 2 and 2 -> -3 and 1 -> -1 cross; -3 -> 0 -> 1 touches zero, which is no crossing.
    assert zero_crossings(x)[0, 0] == 3
    assert zero_crossings(x, threshold=4.0)[0, 0] == 1
    # Troughs at -1 and -3; the flat top 2, 2 gives products of 0, which do not count.
    assert slope_sign_changes(x)[0, 0] == 2


def test_integer_windows_and_leading_axes():
    x = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 12
    np.testing.assert_allclose(mav(x), np.abs(x).mean(axis=-1))
    assert rms(x[0, 0]).shape == ()
    assert zero_crossings(x).sum() == 0  # no row changes sign; 0 -> 1 only touches zero
    assert zero_crossings(np.array([[-1, 0, 1, -2]], dtype=np.int8))[0] == 1


def test_feature_matrix_layout_and_names():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 50)).astype(np.float32)
    m = feature_matrix(x, ["rms", "wl", zero_crossings])
    assert m.shape == (5, 9)
    np.testing.assert_array_equal(m[:, :3], rms(x))
    np.testing.assert_array_equal(m[:, 3:6], waveform_length(x))
    np.testing.assert_array_equal(m[:, 6:], zero_crossings(x))
    np.testing.assert_array_equal(feature_matrix(x, "mav"), mav(x))
    assert set(FEATURES) >= {"rms", "mav", "wl", "zc", "ssc"}
    assert set(features.__all__) >= {"rms", "mav", "waveform_length", "zero_crossings"}


def test_feature_errors_are_clear():
    x = np.zeros((2, 3, 10))
    with pytest.raises(ValueError, match=r"unknown feature 'energy'.*known"):
        feature_matrix(x, ["rms", "energy"])
    with pytest.raises(ValueError, match="features is empty"):
        feature_matrix(x, [])
    with pytest.raises(ValueError, match=r"\(n_windows, n_channels, n_samples\)"):
        feature_matrix(x[0], "rms")
    with pytest.raises(ValueError, match="returned shape"):
        feature_matrix(x, lambda w: w.mean(axis=(1, 2)))
    with pytest.raises(ValueError, match="n_samples >= 1"):
        rms(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="threshold"):
        zero_crossings(x, threshold=-1)
    with pytest.raises(TypeError, match="numeric"):
        mav(np.array([["a", "b"]]))
