"""An EMG-like generator paced in real time: the embedded source for demos and tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from labsession.recording import StreamInfo
from labsession.sources._paced import PacedSource
from labsession.sources._signals import class_patterns

__all__ = ["SyntheticSource"]


class SyntheticSource(PacedSource):
    """Band-limited noise whose per-channel amplitudes follow the active class.

    Class 0 is rest (small noise on every channel); each other class drives its own pattern of
    channels, as gestures recruit different muscles. Samples are produced on demand so that, at
    any moment, exactly ``elapsed * fs`` samples have been emitted (pacing from the clock, no
    drift), with timestamps ``t0 + i / fs`` on the LSL clock.

    Parameters
    ----------
    n_channels
        Channels of the stream.
    fs
        Sample rate (Hz).
    classes
        Class names (the first is rest) or a number of classes.
    seed
        Seed of the noise and of the class patterns.
    noise
        Relative amplitude of the measurement noise added on every channel.
    name
        Stream name suggested to the app (``App`` uses the ``Stream``'s name).
    """

    def __init__(
        self,
        n_channels: int = 8,
        fs: float = 2048.0,
        *,
        classes: Sequence[str] | int = ("Rest", "Fist", "Open"),
        seed: int = 0,
        noise: float = 0.02,
        name: str = "synthetic",
    ):
        super().__init__()
        self.class_names = (
            [f"class{i}" for i in range(classes)] if isinstance(classes, int) else list(classes)
        )
        self.info = StreamInfo(n_channels, fs)
        self.name = name
        self._patterns = class_patterns(len(self.class_names), n_channels, seed=seed)
        self._rng = np.random.default_rng(seed)
        self._noise = noise
        high = min(450.0, 0.45 * fs)
        self._sos = signal.butter(
            4, [min(20.0, high / 2), high], btype="bandpass", fs=fs, output="sos"
        )
        self._zi = np.zeros((self._sos.shape[0], 2, n_channels))
        self._class = 0

    @property
    def active_class(self) -> int:
        """Index of the class whose pattern is being generated."""
        return self._class

    def set_class(self, class_index: int) -> None:
        """Switch the amplitude pattern to class ``class_index`` from the next sample on."""
        if not 0 <= class_index < len(self.class_names):
            raise ValueError(
                f"class_index must be in 0..{len(self.class_names) - 1}, got {class_index}"
            )
        self._class = int(class_index)

    def generate(self, n: int) -> np.ndarray:
        """Return the next ``n`` samples ``(n, n_channels)`` float32 (advances the filter state)."""
        white = self._rng.standard_normal((n, self.info.n_channels))
        filtered, self._zi = signal.sosfilt(self._sos, white, axis=0, zi=self._zi)
        # Band-passed white noise has std ~ sqrt(bandwidth / nyquist); scale it back to ~1.
        gain = np.sqrt(self.info.fs / 2 / (self._sos_band()))
        scale = self._patterns[self._class] + self._noise
        return (filtered * gain * scale).astype(np.float32)

    def _sos_band(self) -> float:
        high = min(450.0, 0.45 * self.info.fs)
        return high - min(20.0, high / 2)

    def make(self, start: int, n: int, state: None) -> np.ndarray:
        """The next ``n`` samples (:meth:`generate`)."""
        return self.generate(n)
