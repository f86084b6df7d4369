"""Synthetic sessions: several recordings of one field of view at known offsets.

For tests, benchmarks and examples. One motion sequence is rendered with
:func:`labsession.motion.synthetic.make_2p_video` on a field larger than the recordings; each
recording is that field moved by its own sub-pixel offset, cropped, and given its own
photon noise, so the offset between two recordings' compensated averages is exactly the
difference of their offsets.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy.ndimage import shift as nd_shift

from labsession.core.atomic import atomic_path

__all__ = ["SyntheticSession", "make_synthetic_session"]


@dataclasses.dataclass(frozen=True)
class SyntheticSession:
    """Files written by :func:`make_synthetic_session` and their ground truth.

    Attributes
    ----------
    files
        The recordings, in sorted order.
    offsets
        ``(n, 2)`` float: ``(dx, dy)`` in pixels by which each recording's content is moved
        (``recording[y + dy, x + dx] = field[y, x]``).
    center_idx
        Index of the middle recording (the session's default center).
    """

    files: list[Path]
    offsets: np.ndarray
    center_idx: int

    def expected_displacement(self, idx: int) -> np.ndarray:
        """True ``(u, v)`` of recording ``idx`` to the center, in pixels."""
        return self.offsets[idx] - self.offsets[self.center_idx]


def make_synthetic_session(
    folder: str | Path,
    *,
    offsets: list[tuple[float, float]] | np.ndarray = ((-1.5, 1.0), (0.0, 0.0), (2.25, -1.75)),
    n_frames: int = 24,
    shape: tuple[int, int] = (48, 48),
    n_channels: int = 1,
    max_shift: float = 1.5,
    photons: float = 200.0,
    margin: int = 8,
    seed: int = 0,
    prefix: str = "rec",
) -> SyntheticSession:
    """Write ``len(offsets)`` TIFF recordings ``<prefix>_<i>.tif`` ``(T, H, W)`` into ``folder``.

    Parameters
    ----------
    folder
        Created if missing.
    offsets
        ``(dx, dy)`` content offset of each recording in pixels (|offset| < ``margin``).
    n_frames, shape
        Frames ``T`` and ``(H, W)`` of each recording.
    n_channels
        1 or 2 channels.
    max_shift
        Peak rigid jitter within a recording (pixels); no drift or non-rigid part, so each
        recording's own reference sits at the same place in every recording.
    photons
        Photons per unit intensity of the Poisson noise (per recording, independent).
    margin
        Extra border rendered around the field so shifted crops stay inside it.
    seed
        Seeds the scene and motion (shared) and the noise (seed + recording index).
    """
    import tifffile

    from labsession.motion.synthetic import make_2p_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    offsets = np.asarray(offsets, dtype=np.float64).reshape(-1, 2)
    if np.abs(offsets).max(initial=0) >= margin - 1:
        raise ValueError(f"offsets must stay within margin - 1 = {margin - 1} pixels")
    height, width = shape
    big = make_2p_video(
        n_frames=n_frames,
        shape=(height + 2 * margin, width + 2 * margin),
        n_channels=n_channels,
        max_shift=max_shift,
        nonrigid=0.0,
        drift=0.0,
        photons=1e6,
        seed=seed,
    )
    files = []
    for idx, (dx, dy) in enumerate(offsets):
        rng = np.random.default_rng(seed + 1000 + idx)
        moved = nd_shift(big.video, (0, dy, dx, 0), order=3, mode="nearest")
        crop = moved[:, margin : margin + height, margin : margin + width]
        noisy = rng.poisson(np.clip(crop, 0, None) * photons).astype(np.float32) / photons
        data = noisy[..., 0] if n_channels == 1 else np.moveaxis(noisy, -1, 1)
        path = folder / f"{prefix}_{idx}.tif"
        with atomic_path(path) as tmp:
            tifffile.imwrite(
                tmp,
                data,
                imagej=True,
                metadata={"axes": "TYX" if n_channels == 1 else "TCYX"},
            )
        files.append(path)
    return SyntheticSession(files=files, offsets=offsets, center_idx=(len(files) + 1) // 2 - 1)
