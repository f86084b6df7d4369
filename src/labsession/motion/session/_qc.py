"""The session QC figure: averages before and after alignment, and the final valid mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labsession.core.atomic import atomic_path

__all__ = ["save_session_qc"]


def _display(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Channel 0 of an ``(H, W[, C])`` image scaled to [0, 1] by ``low``..``high``."""
    image = np.asarray(image, dtype=np.float64)
    image = image[..., 0] if image.ndim == 3 else image
    return np.clip((image - low) / max(high - low, 1e-12), 0.0, 1.0)


def save_session_qc(
    path: str | Path,
    *,
    averages: list[np.ndarray],
    displacements: list[np.ndarray],
    final_valid: np.ndarray,
    middle_idx: int,
    names: list[str],
    dpi: int = 110,
) -> Path:
    """Draw and save (atomically, PNG) the QC figure of a session.

    Row 1: each recording's temporal average (channel 0) before alignment, with the mean
    displacement to the center in the title. Row 2: the same averages warped onto the
    reference. Row 3: red/green overlays of the center (red) and the mean of the others
    (green) before and after alignment (yellow = agreement), and the final valid mask over the
    reference (invalid pixels tinted red).

    Parameters
    ----------
    path
        Target ``.png``.
    averages
        ``(H, W[, C])`` temporal average per recording.
    displacements
        ``(H, W, 2)`` displacement ``[u, v]`` (pixels) of each average to the reference.
    final_valid
        ``(H, W)`` bool session mask.
    middle_idx
        Index of the center (reference) recording.
    names
        Label of each recording.
    """
    from matplotlib.figure import Figure

    from labsession.motion.warping import warp_frame

    reference = np.asarray(averages[middle_idx], dtype=np.float32)
    low, high = np.percentile(reference[..., 0] if reference.ndim == 3 else reference, [1, 99.5])
    warped = [
        warp_frame(np.asarray(a, dtype=np.float32), w, interpolation="cubic", fill=reference)
        for a, w in zip(averages, displacements, strict=True)
    ]
    n = len(averages)
    cols = max(n, 3)
    fig = Figure(figsize=(2.4 * cols, 2.6 * 3), layout="constrained")
    axes = fig.subplots(3, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(n):
        mean_u = float(displacements[i][..., 0].mean())
        mean_v = float(displacements[i][..., 1].mean())
        tag = " (center)" if i == middle_idx else f"\nmean w = ({mean_u:+.2f}, {mean_v:+.2f}) px"
        axes[0, i].imshow(_display(averages[i], low, high), cmap="gray")
        axes[0, i].set_title(f"{names[i]}{tag}", fontsize=8)
        axes[1, i].imshow(_display(warped[i], low, high), cmap="gray")
        axes[1, i].set_title(f"{names[i]} aligned", fontsize=8)
    others = [i for i in range(n) if i != middle_idx] or [middle_idx]
    ref_disp = _display(reference, low, high)
    for col, (title, images) in enumerate(
        (("before alignment", averages), ("after alignment", warped))
    ):
        mix = np.mean([_display(images[i], low, high) for i in others], axis=0)
        rgb = np.stack([ref_disp, mix, np.zeros_like(mix)], axis=-1)
        axes[2, col].imshow(rgb)
        axes[2, col].set_title(f"center (red) vs others (green)\n{title}", fontsize=8)
    overlay = np.stack([ref_disp] * 3, axis=-1)
    overlay[~final_valid] = 0.5 * overlay[~final_valid] + np.array([0.5, 0.0, 0.0])
    axes[2, 2].imshow(overlay)
    kept = 100.0 * float(np.mean(final_valid))
    axes[2, 2].set_title(f"final valid mask ({kept:.1f}% kept)", fontsize=8)
    fig.suptitle(f"motion session QC: {n} recordings", fontsize=10)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return Path(path)
