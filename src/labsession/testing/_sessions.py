"""Record a labelled synthetic session to disk in one call (faster than real time)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labsession.recording import Session, StreamInfo
from labsession.sources._signals import class_patterns, emg_like

__all__ = ["record_synthetic_session", "record_tiny_session"]


def record_synthetic_session(
    base_path: str | os.PathLike[str],
    *,
    class_names: Sequence[str] = ("Rest", "Fist", "Open"),
    n_channels: int = 8,
    fs: float = 2048.0,
    phase_seconds: float = 1.5,
    repeats: int = 3,
    t0: float = 1000.0,
    aux_stream: tuple[str, int, float] | None = ("glove", 3, 100.0),
    chunk: int = 64,
    seed: int = 0,
    pack: bool = True,
) -> Path:
    """Write a session of cued classes: rest, class 1, rest, class 2, ... repeated.

    The ``emg`` stream follows :func:`class_patterns`; an optional auxiliary stream (name,
    channels, rate) carries each class's index plus noise, like a data glove. Appends arrive in
    ``chunk``-sample blocks as acquisition threads deliver them.

    Returns
    -------
    Path
        The ``.session.zip`` (``pack=True``) or the session folder.
    """
    rng = np.random.default_rng(seed)
    n_classes = len(class_names)
    patterns = class_patterns(n_classes, n_channels, seed=seed)
    cues = [c for _ in range(repeats) for k in range(1, n_classes) for c in (0, k)] + [0]
    per_phase = round(phase_seconds * fs)
    classes_per_sample = np.repeat(cues, per_phase)
    # Effort varies from one repetition to the next, as it does in people.
    gains = np.repeat(rng.uniform(0.6, 1.4, size=(len(cues), n_channels)), per_phase, axis=0)
    emg = emg_like(patterns[classes_per_sample] * gains, fs, rng=rng)
    ts = t0 + np.arange(emg.shape[0]) / fs

    session = Session(base_path, app_name="labsession-synthetic", class_names=list(class_names))
    session.init_stream("emg", StreamInfo(n_channels, fs))
    for start in range(0, emg.shape[0], chunk):
        session.append("emg", emg[start : start + chunk], ts[start : start + chunk])
    if aux_stream is not None:
        name, aux_channels, aux_fs = aux_stream
        session.init_stream(name, StreamInfo(aux_channels, aux_fs))
        n_aux = int(emg.shape[0] / fs * aux_fs)
        aux_ts = t0 + np.arange(n_aux) / aux_fs
        active = np.asarray(cues)[
            np.minimum((np.arange(n_aux) / aux_fs / phase_seconds).astype(int), len(cues) - 1)
        ]
        aux = active[:, None] + 0.05 * rng.standard_normal((n_aux, aux_channels))
        session.append(name, aux.astype(np.float32), aux_ts)
    for i, cls in enumerate(cues):
        session.add_label(cls, timestamp=t0 + i * phase_seconds)
    if pack:
        return session.pack_to_zip()
    session.close()
    return session.path


def record_tiny_session(
    base_path: str | os.PathLike[str],
    *,
    class_names: Sequence[str] = ("Rest", "Fist", "Open"),
    seed: int = 0,
    pack: bool = True,
) -> Path:
    """A 1-second session of 2 channels at 100 Hz, labelled rest, each class, rest, in 0.2 s
    phases: for tests and benchmarks that need many real sessions fast (a few ms each).

    Returns the ``.session.zip`` (``pack=True``) or the session folder.
    """
    return record_synthetic_session(
        base_path,
        class_names=class_names,
        n_channels=2,
        fs=100.0,
        phase_seconds=0.2,
        repeats=1,
        aux_stream=None,
        seed=seed,
        pack=pack,
    )
