"""Which samples a label covers: nearest-sample lookup and label segments.

A label covers the samples from the one nearest its timestamp to the one nearest the next label's
timestamp (exclusive); the last label runs to the end of the data. Ties go to the earlier sample,
as ``numpy.argmin(abs(ts - t))`` decides them in MyoGestic, whose results these must equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labsession.recording._records import UNLABELLED, LabelEvent

__all__ = ["Segment", "label_segments", "nearest_index"]


def nearest_index(ts: np.ndarray, t: float | np.ndarray) -> np.ndarray | int:
    """Index of the sample of ``ts`` nearest to ``t`` (earlier one on ties).

    ``ts`` non-decreasing (as recorded timestamps are) is searched in ``O(log n)``; otherwise the
    whole array is scanned, which gives the same answer as ``argmin(abs(ts - t))``.
    """
    scalar = np.ndim(t) == 0
    targets = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if ts.size == 0:
        raise ValueError("no samples to search")
    if ts.size == 1:
        result = np.zeros(targets.shape, dtype=np.intp)
    elif np.any(np.diff(ts) < 0):
        result = np.array([int(np.argmin(np.abs(ts - x))) for x in targets])
    else:
        right = np.clip(np.searchsorted(ts, targets, side="left"), 1, ts.size - 1)
        left = right - 1
        take_right = np.abs(ts[right] - targets) < np.abs(ts[left] - targets)
        result = np.where(take_right, right, left)
        # Ties (repeated timestamps, or distances equal after rounding): argmin takes the first
        # sample at the minimum distance, so step back while the previous one is as near.
        todo = np.flatnonzero(result > 0)
        while todo.size:
            i = result[todo]
            back = np.abs(ts[i - 1] - targets[todo]) <= np.abs(ts[i] - targets[todo])
            todo = todo[back]
            result[todo] -= 1
            todo = todo[result[todo] > 0]
    return int(result[0]) if scalar else result


@dataclass(frozen=True)
class Segment:
    """Samples ``[start, stop)`` of a stream that carry label ``label`` (``index`` in the track)."""

    index: int
    label: LabelEvent
    start: int
    stop: int


def label_segments(
    ts: np.ndarray,
    labels: Sequence[LabelEvent],
    *,
    pre: float = 0.0,
    post: float | None = None,
    classes: set[int] | None = None,
) -> list[Segment]:
    """Cut a stream into the segments its labels cover.

    Parameters
    ----------
    ts
        ``(n_samples,)`` timestamps of the stream (s).
    labels
        The label track in time order.
    pre
        Seconds before each label to start the segment (trials).
    post
        For the last label only: end ``post`` seconds after it instead of at the end of data
        (``None`` or 0 = end of data), as MyoGestic's ``get_trials`` does.
    classes
        Keep only these class indices. ``UNLABELLED`` labels are always skipped.

    Returns
    -------
    list of Segment
        Non-empty segments in track order.
    """
    if ts.size == 0 or not labels:
        return []
    times = np.array([e.timestamp for e in labels], dtype=np.float64)
    starts = nearest_index(ts, times - pre)
    boundaries = nearest_index(ts, times)
    segments = []
    for i, event in enumerate(labels):
        if event.class_index == UNLABELLED or (
            classes is not None and event.class_index not in classes
        ):
            continue
        if i + 1 < len(labels):
            stop = int(boundaries[i + 1])
        elif post:
            stop = int(nearest_index(ts, event.timestamp + post))
        else:
            stop = int(ts.size)
        start = int(starts[i])
        if stop > start:
            segments.append(Segment(i, event, start, stop))
    return segments
