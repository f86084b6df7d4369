"""Common time-domain EMG features, vectorised over windows.

Every feature takes windows ``(..., n_samples)``, typically ``(n_windows, n_channels,
n_samples)`` as :func:`labsession.recording.iter_labeled_windows` yields them stacked, and
reduces the last axis: the result is ``(..., )``, e.g. ``(n_windows, n_channels)``. Amplitude
features are float64 in the signal's units; count features are int64. The definitions are the
Hudgins set (Hudgins, Parker & Scott, 1993, IEEE Trans. Biomed. Eng. 40(1):82-94,
doi:10.1109/10.204774) as most EMG toolboxes implement them.

:func:`feature_matrix` stacks several features into the ``(n_windows, n_features * n_channels)``
matrix scikit-learn expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "FEATURES",
    "feature_matrix",
    "mav",
    "rms",
    "slope_sign_changes",
    "waveform_length",
    "zero_crossings",
]

Feature = Callable[[np.ndarray], np.ndarray]


def _as_windows(windows: np.ndarray, min_samples: int, name: str) -> np.ndarray:
    x = np.asarray(windows)
    if x.ndim < 1 or x.shape[-1] < min_samples:
        raise ValueError(
            f"{name} needs windows (..., n_samples) with n_samples >= {min_samples}, "
            f"got shape {x.shape}"
        )
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} needs real numeric windows, got dtype {x.dtype}")
    return x


def rms(windows: np.ndarray) -> np.ndarray:
    """Root mean square of each window: ``sqrt(mean(x**2))``.

    Parameters
    ----------
    windows
        ``(..., n_samples)`` signal, e.g. ``(n_windows, n_channels, n_samples)``.

    Returns
    -------
    ndarray
        ``(...)`` float64, in the signal's units.
    """
    x = _as_windows(windows, 1, "rms")
    return np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-1))


def mav(windows: np.ndarray) -> np.ndarray:
    """Mean absolute value of each window: ``mean(|x|)``.

    Parameters
    ----------
    windows
        ``(..., n_samples)`` signal.

    Returns
    -------
    ndarray
        ``(...)`` float64, in the signal's units.
    """
    x = _as_windows(windows, 1, "mav")
    return np.mean(np.abs(x.astype(np.float64, copy=False)), axis=-1)


def waveform_length(windows: np.ndarray) -> np.ndarray:
    """Waveform length: the summed absolute difference of consecutive samples.

    ``sum(|x[i + 1] - x[i]|)`` over the window, a measure of amplitude and frequency together.

    Parameters
    ----------
    windows
        ``(..., n_samples)`` signal.

    Returns
    -------
    ndarray
        ``(...)`` float64, in the signal's units (0 for a one-sample window).
    """
    x = _as_windows(windows, 1, "waveform_length").astype(np.float64, copy=False)
    return np.sum(np.abs(np.diff(x, axis=-1)), axis=-1)


def zero_crossings(windows: np.ndarray, *, threshold: float = 0.0) -> np.ndarray:
    """Number of sign changes between consecutive samples.

    A pair ``(x[i], x[i + 1])`` counts when ``x[i] * x[i + 1] < 0`` (strictly opposite signs:
    touching zero is no crossing) and ``|x[i] - x[i + 1]| >= threshold``, which ignores crossings
    by noise smaller than ``threshold``.

    Parameters
    ----------
    windows
        ``(..., n_samples)`` signal.
    threshold
        Smallest step (signal units, >= 0) that counts.

    Returns
    -------
    ndarray
        ``(...)`` int64 counts in ``[0, n_samples - 1]``.
    """
    x = _as_windows(windows, 1, "zero_crossings").astype(np.float64, copy=False)
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    a, b = x[..., :-1], x[..., 1:]
    crossing = (a * b < 0) & (np.abs(a - b) >= threshold)
    return np.count_nonzero(crossing, axis=-1).astype(np.int64)


def slope_sign_changes(windows: np.ndarray, *, threshold: float = 0.0) -> np.ndarray:
    """Number of changes of the slope's sign (local maxima and minima).

    Sample ``i`` (not the first or last) counts when
    ``(x[i] - x[i - 1]) * (x[i] - x[i + 1]) > threshold``.

    Parameters
    ----------
    windows
        ``(..., n_samples)`` signal.
    threshold
        Smallest product (signal units squared, >= 0) that counts.

    Returns
    -------
    ndarray
        ``(...)`` int64 counts in ``[0, n_samples - 2]`` (0 below three samples).
    """
    x = _as_windows(windows, 1, "slope_sign_changes").astype(np.float64, copy=False)
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    mid = x[..., 1:-1]
    change = (mid - x[..., :-2]) * (mid - x[..., 2:]) > threshold
    return np.count_nonzero(change, axis=-1).astype(np.int64)


#: The features by name, as :func:`feature_matrix` and ``TrainingData.to_arrays`` accept them.
FEATURES: dict[str, Feature] = {
    "rms": rms,
    "mav": mav,
    "waveform_length": waveform_length,
    "wl": waveform_length,
    "zero_crossings": zero_crossings,
    "zc": zero_crossings,
    "slope_sign_changes": slope_sign_changes,
    "ssc": slope_sign_changes,
}


def resolve_features(features: str | Feature | Sequence[str | Feature]) -> list[Feature]:
    """Turn a name, a callable or a sequence of them into a list of callables."""
    items = [features] if isinstance(features, str) or callable(features) else list(features)
    if not items:
        raise ValueError("features is empty: name at least one, e.g. ['rms', 'wl']")
    resolved = []
    for item in items:
        if callable(item):
            resolved.append(item)
        elif item in FEATURES:
            resolved.append(FEATURES[item])
        else:
            raise ValueError(f"unknown feature {item!r}; known: {sorted(FEATURES)}")
    return resolved


def feature_matrix(
    windows: np.ndarray, features: str | Feature | Sequence[str | Feature]
) -> np.ndarray:
    """Compute several features and lay them side by side, one row per window.

    Parameters
    ----------
    windows
        ``(n_windows, n_channels, n_samples)`` signal.
    features
        Names from :data:`FEATURES` (``"rms"``, ``"mav"``, ``"wl"``, ``"zc"``, ``"ssc"``, ...),
        callables ``(n_windows, n_channels, n_samples) -> (n_windows, n_channels)``, or a list
        of either.

    Returns
    -------
    ndarray
        ``(n_windows, n_features * n_channels)`` float64: all channels of the first feature,
        then all channels of the second, and so on.
    """
    x = np.asarray(windows)
    if x.ndim != 3:
        raise ValueError(f"windows must be (n_windows, n_channels, n_samples), got {x.shape}")
    columns = []
    for feature in resolve_features(features):
        value = np.asarray(feature(x), dtype=np.float64)
        if value.shape != x.shape[:2]:
            raise ValueError(
                f"feature {getattr(feature, '__name__', feature)!r} returned shape "
                f"{value.shape}; expected (n_windows, n_channels) = {x.shape[:2]}"
            )
        columns.append(value)
    return np.concatenate(columns, axis=1)
