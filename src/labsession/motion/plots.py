"""Quality-control figure of a motion correction (``motion-qc.png``).

Four panels: the temporal mean before and after correction (a sharp mean means the cells stayed
put), the displacement over time (mean and maximum magnitude per frame, in pixels), and each
frame's correlation with the reference before and after correction.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from labsession.core.atomic import atomic_path

__all__ = ["qc_figure", "save_qc_figure"]


def _display(image: np.ndarray) -> np.ndarray:
    """First channel of ``(H, W[, C])``, clipped to its 1-99.5 percentiles for display."""
    plane = image[..., 0] if image.ndim == 3 else image
    low, high = np.percentile(plane, [1.0, 99.5])
    return np.clip((plane - low) / max(high - low, 1e-12), 0.0, 1.0)


def qc_figure(
    *,
    mean_before: np.ndarray,
    mean_after: np.ndarray,
    statistics: dict[str, np.ndarray],
    title: str = "motion correction",
) -> Figure:
    """Build the QC figure.

    Parameters
    ----------
    mean_before, mean_after
        Temporal means ``(H, W)`` or ``(H, W, C)`` of the raw and the corrected video (the
        first channel is shown).
    statistics
        Per-frame arrays ``(T,)``: ``mean_displacement``, ``max_displacement`` (px),
        ``corr_before``, ``corr_after`` (as in ``CompensationResult.statistics``).
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(1.25, 1.0))
    for col, (image, label) in enumerate(
        ((mean_before, "mean before"), (mean_after, "mean after"))
    ):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(_display(np.asarray(image)), cmap="gray", interpolation="nearest")
        ax.set_title(label)
        ax.set_axis_off()
    frames = np.arange(len(statistics["mean_displacement"]))
    ax = fig.add_subplot(grid[1, 0])
    ax.plot(frames, statistics["mean_displacement"], label="mean |w|")
    ax.plot(frames, statistics["max_displacement"], label="max |w|", alpha=0.7)
    ax.set_xlabel("frame")
    ax.set_ylabel("displacement (px)")
    ax.set_title("displacement over time")
    ax.legend(loc="upper right")
    ax = fig.add_subplot(grid[1, 1])
    ax.plot(frames, statistics["corr_before"], label="before", color="tab:red")
    ax.plot(frames, statistics["corr_after"], label="after", color="tab:green")
    ax.set_xlabel("frame")
    ax.set_ylabel("Pearson r")
    ax.set_title("correlation with the reference")
    ax.legend(loc="lower right")
    fig.suptitle(title)
    return fig


def save_qc_figure(
    path: str | os.PathLike[str],
    *,
    mean_before: np.ndarray,
    mean_after: np.ndarray,
    statistics: dict[str, np.ndarray],
    title: str = "motion correction",
    dpi: int = 110,
) -> Path:
    """Build :func:`qc_figure` and write it as PNG to ``path`` atomically; returns ``path``."""
    fig = qc_figure(
        mean_before=mean_before, mean_after=mean_after, statistics=statistics, title=title
    )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)
