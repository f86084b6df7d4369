"""Record labelled sessions, cut them into windows, train a scikit-learn classifier, replay one.

    python examples/train_classifier.py [--out DIR]

1. Record: three sessions of cued gestures (synthetic EMG standing in for an amplifier), each
   with ``Session.append`` for the samples and ``Session.add_label`` at every cue, packed to a
   ``.session.zip``.
2. Windows: ``TrainingData.to_arrays`` cuts every labelled segment into 200 ms windows every
   50 ms (dropping each session's first segment, the set-up) and reduces them to four EMG
   features per channel; ``groups`` says which session each window came from.
3. Model: linear discriminant analysis, scored by leave-one-session-out cross-validation.
4. Replay: ``ReplaySource`` plays a fresh session back sample by sample (``speed=0``) with its
   labels, and the trained model classifies it window by window as it would live.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import LeaveOneGroupOut, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from labsession.recording import Session, StreamInfo, TrainingData
from labsession.recording.features import feature_matrix
from labsession.sources import ReplaySource
from labsession.testing import class_patterns, emg_like

CLASSES = ["Rest", "Fist", "Open"]
FS = 1000.0
FEATURES = ["rms", "wl", "zc", "ssc"]
WIN, HOP = 0.2, 0.05


def record(base: Path, seed: int) -> Path:
    """Record one session: rest, Fist, rest, Open, ... each cue held 1.5 s."""
    rng = np.random.default_rng(seed)
    patterns = class_patterns(len(CLASSES), 8, seed=0)  # the same "muscles" every session
    cues = [0, 1, 0, 2] * 4 + [0]
    per_cue = int(1.5 * FS)
    t0 = 1000.0
    with Session(base, app_name="example", class_names=CLASSES) as session:
        session.init_stream("emg", StreamInfo(n_channels=8, fs=FS))
        for i, cls in enumerate(cues):
            start = t0 + i * per_cue / FS
            session.add_label(cls, timestamp=start)
            effort = rng.uniform(0.7, 1.3, size=8)
            data = emg_like(np.tile(patterns[cls] * effort, (per_cue, 1)), FS, rng=rng)
            ts = start + np.arange(per_cue) / FS
            for k in range(0, per_cue, 100):  # as an acquisition thread delivers chunks
                session.append("emg", data[k : k + 100], ts[k : k + 100])
        return session.pack_to_zip()


def main(out: Path) -> float:
    paths = [record(out, seed) for seed in range(3)]

    data = TrainingData(paths)
    X, y, groups = data.to_arrays("emg", WIN, HOP, features=FEATURES)
    print(f"{X.shape[0]} windows x {X.shape[1]} features from {len(data)} sessions")

    model = make_pipeline(StandardScaler(), LinearDiscriminantAnalysis())
    scores = cross_val_score(model, X, y, groups=groups, cv=LeaveOneGroupOut())
    print(f"leave-one-session-out accuracy: {scores.mean():.3f} ({np.round(scores, 3)})")
    model.fit(X, y)

    # Replay a new session as if live and classify each window when it completes.
    source = ReplaySource(record(out, seed=99), "emg", speed=0, loop=False, replay_labels=True)
    info = source.connect()
    win, hop = int(WIN * info.fs), int(HOP * info.fs)
    buffer = np.zeros((0, info.n_channels), np.float32)
    hits = total = 0
    try:
        while not source.finished:
            source.step(min(hop, source.n_remaining))
            chunk = source.read()
            buffer = np.concatenate([buffer, chunk[0]])[-win:]
            truth = source.current_class
            if len(buffer) < win or truth is None:
                continue
            features = feature_matrix(buffer.T[None], FEATURES)
            hits += int(model.predict(features)[0] == truth)
            total += 1
    finally:
        source.close()
    accuracy = hits / total
    print(f"replayed session: {accuracy:.3f} of {total} windows classified right")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the sessions")
    args = parser.parse_args()
    if args.out is None:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
    else:
        main(args.out)
