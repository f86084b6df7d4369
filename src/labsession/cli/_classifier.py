"""The demo's gesture classifier: four EMG features per channel and linear discriminant analysis.

Shared by ``labsession demo`` and ``labsession gui`` so both train and predict the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["FEATURES", "HOP", "WIN", "predict_class", "train_lda"]

#: Features per channel (see ``labsession.recording.features``).
FEATURES = ("rms", "wl", "zc", "ssc")
#: Window length and hop (s).
WIN, HOP = 0.2, 0.05


def train_lda(data: Any, stream: str) -> Any:
    """Fit an LDA on the labelled windows of ``stream`` in ``data`` (a ``TrainingData``).

    Every labelled segment counts, the first of each session too: in the window each class
    click is deliberate (``TrainingData``'s default skips the first, a set-up segment in cued
    recordings, so a class clicked once, first, was never learnt).

    Raises
    ------
    ValueError
        If the sessions hold no labelled window of that stream, or a single class.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x, y, _ = data.to_arrays(stream, WIN, HOP, features=list(FEATURES), skip_first=False)
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"stream {stream!r}: the ticked sessions hold {len(y)} labelled windows of "
            f"{len(np.unique(y))} class(es); training needs at least two classes"
        )
    model = LinearDiscriminantAnalysis().fit(x, y)
    model.training_accuracy_ = float(model.score(x, y))
    model.n_windows_ = len(y)
    return model


def predict_class(model: Any, window: np.ndarray, fs: float) -> int | None:
    """The class of the latest window ``(n_channels, n_samples)``; None while too short."""
    from labsession.recording.features import feature_matrix

    if model is None or window.shape[1] < round(WIN * fs):
        return None
    return int(model.predict(feature_matrix(window[None], list(FEATURES)))[0])
