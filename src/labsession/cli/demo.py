"""``labsession demo``: record a synthetic session, pack it, read it back, train a model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option("--out", help="Where the session is written.")] = Path(
        "demo_output"
    ),
    repeats: Annotated[int, typer.Option(help="Cycles through the classes.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic signal.")] = 0,
) -> None:
    """Record a 3-class synthetic EMG session, pack and verify it, then train a classifier."""
    import numpy as np
    from rich.console import Console
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

    from labsession.recording import open_session_store, session_summary
    from labsession.testing import record_synthetic_session

    console = Console()
    started = time.perf_counter()
    zip_path = record_synthetic_session(out / "sessions", repeats=repeats, seed=seed)
    summary = session_summary(zip_path)
    emg = summary["streams"]["emg"]
    console.print(
        f"[bold]1. recorded[/bold] {emg['n_samples']} samples x {emg['n_channels']} channels at "
        f"{emg['fs']:g} Hz ({emg['duration_s']:.1f} s) and {summary['n_labels']} labels"
    )
    console.print(
        f"[bold]2. packed and verified[/bold] {zip_path} ({summary['size_bytes'] / 1e6:.1f} MB)"
    )

    features, classes, groups = [], [], []
    with open_session_store(zip_path) as store:
        trials = store.get_trials("emg")
        win = int(0.2 * emg["fs"])
        for trial_index, trial in enumerate(trials):
            n_windows = trial.data.shape[1] // win
            windows = trial.data[:, : n_windows * win].reshape(trial.data.shape[0], n_windows, win)
            features.append(np.log(np.sqrt((windows**2).mean(axis=2)).T + 1e-6))
            classes.append(np.full(n_windows, trial.class_index))
            groups.append(np.full(n_windows, trial_index))
    x, y, g = np.concatenate(features), np.concatenate(classes), np.concatenate(groups)
    console.print(
        f"[bold]3. read back[/bold] {len(trials)} trials -> {len(y)} windows of 200 ms, "
        f"log-RMS features {x.shape}"
    )
    scores = cross_val_score(
        LinearDiscriminantAnalysis(), x, y, groups=g, cv=StratifiedGroupKFold(4)
    )
    console.print(
        f"[bold]4. trained[/bold] LDA, 4-fold cross-validation grouped by trial: accuracy "
        f"{scores.mean():.1%} (chance {1 / len(summary['class_names']):.0%})"
    )
    console.print(
        f"done in {time.perf_counter() - started:.1f} s; inspect: labsession info {zip_path}"
    )
