"""Cue-driven recording: rest and each class in turn, labelled as the cues change."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from labsession.acquisition._app import App

__all__ = ["cue_schedule", "run_cued_recording"]

log = logging.getLogger(__name__)


def cue_schedule(n_classes: int, repeats: int) -> list[int]:
    """Class indices cued in turn: ``rest, 1, rest, 2, ..., rest`` ``repeats`` times, then rest.

    Class 0 is rest.
    """
    if n_classes < 2 or repeats < 1:
        raise ValueError(f"need >= 2 classes and >= 1 repeat, got {n_classes} and {repeats}")
    return [c for _ in range(repeats) for k in range(1, n_classes) for c in (0, k)] + [0]


def run_cued_recording(
    app: App,
    schedule: Sequence[int],
    cycle_seconds: float,
    *,
    on_cue: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> bool:
    """Label the app's current recording with each cue of ``schedule`` for ``cycle_seconds``.

    Before each cue, ``on_cue(step, class_index)`` is called (print the cue, switch a synthetic
    source's class, ...); the label is then added with the current LSL time. Returns False if
    ``stop`` was set before the schedule ended.
    """
    stop = stop or threading.Event()
    start = time.monotonic()
    for step, class_index in enumerate(schedule):
        if on_cue is not None:
            on_cue(step, class_index)
        app.add_label(class_index)
        if stop.wait(max(0.0, start + (step + 1) * cycle_seconds - time.monotonic())):
            return False
    return True
