"""``labsession demo``: record a live synthetic session, train a classifier, replay it live."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from labsession.cli._classifier import FEATURES, HOP, WIN, predict_class
from labsession.cli._validate import ranged
from labsession.core.units import format_bytes

#: Fewest repetitions: the classifier is cross-validated with one fold per repetition, and
#: k-fold cross-validation (scikit-learn's StratifiedGroupKFold) needs k >= 2.
MIN_REPEATS = 2
#: Shortest cue (s): each cue must hold a few of the classifier's windows (WIN s long).
MIN_CYCLE = 0.5


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Where the session is written.", file_okay=False)
    ] = Path("demo_output"),
    cycle: Annotated[
        float,
        ranged(
            help="Seconds per cue.",
            ge=MIN_CYCLE,
            why=f"each cue must hold a few of the classifier's {WIN * 1000:.0f} ms windows",
        ),
    ] = 2.5,
    repeats: Annotated[
        int,
        ranged(
            help="Cycles through the classes (one cross-validation fold each).",
            ge=MIN_REPEATS,
            why="the classifier is cross-validated with one fold per repetition, and k-fold "
            "cross-validation needs at least 2 folds",
        ),
    ] = 3,
    replay_speed: Annotated[float, ranged(help="Speed of the replay (1 = real time).", gt=0)] = 4.0,
    seed: Annotated[int, ranged(help="Seed of the synthetic source.", ge=0)] = 0,
) -> None:
    """Record ~30 s of a 3-class synthetic EMG session, train a classifier, replay it live.

    1. records a cue-driven session from the embedded synthetic source through the App
       (real time, as from a device), packs and verifies it;
    2. reopens it and cuts labelled windows (TrainingData);
    3. cross-validates an LDA classifier on EMG features, grouped by repetition;
    4. replays the recording through a live Pipeline and scores its predictions.
    """
    import numpy as np
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

    from labsession.acquisition import App, Pipeline, Stream, cue_schedule, run_cued_recording
    from labsession.cli._console import cli_console
    from labsession.recording import TrainingData, session_summary
    from labsession.recording.features import feature_matrix
    from labsession.sources import ReplaySource, SyntheticSource

    console = cli_console()
    started = time.perf_counter()
    class_names = ["Rest", "Fist", "Open"]
    schedule = cue_schedule(len(class_names), repeats)

    # 1. Record live.
    source = SyntheticSource(8, 2048.0, classes=class_names, seed=seed)
    app = App("labsession-demo", class_names=class_names)
    app.streams(Stream("emg", source))
    app.start()
    app.wait_connected(10)
    app.start_recording(out / "sessions")
    console.print(f"[bold]1. recording[/bold] {len(schedule)} cues of {cycle:g} s: ", end="")

    def on_cue(step: int, class_index: int) -> None:
        source.set_class(class_index)
        console.print(class_names[class_index], end=" ")

    run_cued_recording(app, schedule, cycle, on_cue=on_cue)
    app.stop_recording()
    app.wait_idle()
    app.ctx.streams["emg"].stop()
    zip_path = app.ctx.packed[-1]
    summary = session_summary(zip_path)
    emg = summary["streams"]["emg"]
    console.print(
        f"\n   {emg['n_samples']:,} samples x {emg['n_channels']} channels at {emg['fs']:g} Hz "
        f"({emg['duration_s']:.1f} s), {summary['n_labels']} labels; packed and verified: "
        f"{zip_path} ({format_bytes(summary['size_bytes'])})"
    )

    # 2. Windows, grouped by repetition of the cue cycle.
    data = TrainingData([zip_path], class_names)
    windows, classes, starts = [], [], []
    for window, ts, class_index in data.windows("emg", WIN, HOP):
        windows.append(window)
        classes.append(class_index)
        starts.append(ts[0])
    x = feature_matrix(np.stack(windows), list(FEATURES))
    y = np.asarray(classes)
    cues_per_repeat = 2 * (len(class_names) - 1)
    label_times = np.array([e.timestamp for e in _labels(zip_path)])
    segment = np.searchsorted(label_times, np.asarray(starts), side="right") - 1
    groups = np.minimum(segment // cues_per_repeat, repeats - 1)
    console.print(
        f"[bold]2. read back[/bold] {len(y)} windows of {WIN * 1000:.0f} ms (hop "
        f"{HOP * 1000:.0f} ms, first rest skipped), features {', '.join(FEATURES)} -> {x.shape}"
    )

    # 3. Cross-validate, then fit on everything.
    model = LinearDiscriminantAnalysis()
    cv = StratifiedGroupKFold(n_splits=repeats)
    scores = cross_val_score(model, x, y, groups=groups, cv=cv)
    model.fit(x, y)
    console.print(
        f"[bold]3. trained[/bold] LDA, {repeats}-fold cross-validation grouped by repetition: "
        f"accuracy {scores.mean():.1%} (chance {1 / len(class_names):.0%})"
    )

    # 4. Replay the recording through the live predict path.
    replay = ReplaySource(zip_path, "emg", speed=replay_speed, loop=False, replay_labels=True)
    live = App("labsession-demo-replay", class_names=class_names)
    live.streams(Stream("emg", replay, window_seconds=WIN))
    pipeline = Pipeline(live, stream="emg", rate=10 * replay_speed)
    scored: list[tuple[int, int]] = []

    @pipeline.predict
    def predict(model, window):
        predicted = predict_class(model, window, emg["fs"])
        if predicted is None:
            return None
        truth = replay.current_class
        if truth is not None and truth >= 0:
            scored.append((predicted, truth))
        return predicted

    pipeline.model = model
    live.start()
    live.wait_connected(10)
    pipeline.start()
    deadline = time.monotonic() + emg["duration_s"] / replay_speed + 10
    while not replay.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    pipeline.stop()
    live.ctx.streams["emg"].stop()
    hits = sum(p == t for p, t in scored)
    console.print(
        f"[bold]4. replayed[/bold] at {replay_speed:g}x through the live pipeline: "
        f"{len(scored)} predictions, accuracy {hits / max(1, len(scored)):.1%} "
        "(windows straddling a cue change count as errors)"
    )
    console.print(
        f"done in {time.perf_counter() - started:.0f} s. Files: {zip_path}\n"
        f"Inspect with: labsession info {zip_path}"
    )


def _labels(path: Path):
    from labsession.recording import open_session_store

    with open_session_store(path) as store:
        return store.label_track
