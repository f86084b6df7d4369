"""EMG-like synthetic signals whose per-channel amplitude depends on the active class.

Used by :class:`~labsession.sources.SyntheticSource` and re-exported by :mod:`labsession.testing`
(``class_patterns``, ``emg_like``) for tests and benchmarks built on labsession.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

__all__ = ["class_patterns", "emg_like"]


def class_patterns(n_classes: int, n_channels: int, *, seed: int = 0) -> np.ndarray:
    """Per-class channel amplitude patterns, ``(n_classes, n_channels)``.

    Class 0 is rest (small, equal amplitude on every channel); each other class activates a
    different random subset of channels strongly, as different gestures recruit different muscles.
    """
    rng = np.random.default_rng(seed)
    patterns = np.full((n_classes, n_channels), 0.05)
    for k in range(1, n_classes):
        patterns[k] = 0.1 + rng.random(n_channels) ** 2
        patterns[k, rng.choice(n_channels, max(1, n_channels // 3), replace=False)] += 1.0
    return patterns


def emg_like(
    amplitudes: np.ndarray,
    fs: float,
    *,
    rng: np.random.Generator,
    band: tuple[float, float] = (20.0, 450.0),
) -> np.ndarray:
    """Band-limited Gaussian noise scaled per sample and channel.

    Parameters
    ----------
    amplitudes
        ``(n_samples, n_channels)`` amplitude envelope (e.g. a class pattern per sample).
    fs
        Sample rate (Hz); the band is clipped below Nyquist.
    rng
        Source of randomness (seeded by the caller).

    Returns
    -------
    ndarray
        ``(n_samples, n_channels)`` float32 signal.
    """
    n_samples, n_channels = amplitudes.shape
    high = min(band[1], 0.45 * fs)
    low = min(band[0], high / 2)
    sos = signal.butter(4, [low, high], btype="bandpass", fs=fs, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal((n_samples, n_channels)), axis=0)
    noise /= max(float(noise.std()), 1e-12)
    return (noise * amplitudes).astype(np.float32)
