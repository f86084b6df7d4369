"""One synthetic recording with known motion, as ``labsession motion synth`` writes it."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_OFFSET", "synthetic_video"]

#: Border (px) rendered around the frame so that an offset content stays inside the field.
_MARGIN = 8
#: Largest ``offset`` component accepted (px).
MAX_OFFSET = float(_MARGIN - 2)


def synthetic_video(
    *,
    n_frames: int = 100,
    shape: tuple[int, int] = (128, 128),
    n_channels: int = 1,
    max_shift: float = 3.0,
    offset: tuple[float, float] = (0.0, 0.0),
    photons: float = 100.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic 2-photon recording of the field of ``seed`` seen at ``offset``, and its motion.

    The field (cells flashing like a calcium indicator on a textured background) and its
    motion (rigid jitter up to ``max_shift`` px, a slow 2 px drift and a 1 px non-rigid part)
    come from :func:`labsession.motion.synthetic.make_2p_video`, rendered on a margin around the
    frame; the whole content is then moved by ``offset``, cropped to ``shape`` and given Poisson
    noise of its own (seeded by ``seed`` and ``offset``). Recordings with one ``seed`` and
    different offsets show the same cells with the same motion, as a field of view revisited:
    a multi-recording session (``labsession motion run``) aligns them by their offsets.

    Parameters
    ----------
    n_frames, shape
        Frames ``T`` and frame size ``(H, W)`` in pixels (each >= 16).
    n_channels
        1 (functional) or 2 (functional + structural).
    max_shift
        Peak rigid jitter in pixels.
    offset
        ``(dx, dy)`` in pixels by which the content is moved: ``video[y + dy, x + dx] =
        field[y, x]``; each within ``+-MAX_OFFSET`` (6 px).
    photons
        Photons per unit intensity of the noise (lower: noisier).
    seed
        Seeds the field and its motion.

    Returns
    -------
    video : numpy.ndarray
        ``(T, H, W, C)`` float32, in photons / ``photons`` (about 0.2-2).
    shifts : numpy.ndarray
        ``(T, 2)`` float64: each frame's true displacement ``[u, v]`` = ``[x, y]`` in pixels,
        averaged over the frame, ``offset`` included, in the convention of
        :func:`~labsession.motion.compensate_arr` (``video[t, y + v, x + u] = scene[y, x]``).

    Raises
    ------
    ValueError
        ``offset`` beyond ``MAX_OFFSET``, ``n_channels`` not 1 or 2, or frames under 16x16.

    Examples
    --------
    >>> video, shifts = synthetic_video(n_frames=4, shape=(32, 32), offset=(1.5, 0.0))
    >>> video.shape, shifts.shape
    ((4, 32, 32, 1), (4, 2))
    """
    import cv2

    from labsession.motion.synthetic import make_2p_video

    dx, dy = (float(v) for v in offset)
    if not all(math.isfinite(v) and abs(v) <= MAX_OFFSET for v in (dx, dy)):
        raise ValueError(f"offset must be within +-{MAX_OFFSET:g} pixels, got {offset!r}")
    height, width = shape
    margin = _MARGIN  # the same for every offset: the same field and motion for one seed
    made = make_2p_video(
        n_frames=n_frames,
        shape=(height + 2 * margin, width + 2 * margin),
        n_channels=n_channels,
        max_shift=max_shift,
        photons=1e9,  # next to noise-free: the noise is added after the offset
        seed=seed,
    )
    field = made.video
    if dx or dy:
        move = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])  # dst[y + dy, x + dx] = src[y, x]
        size = (field.shape[2], field.shape[1])
        field = np.stack(
            [
                cv2.warpAffine(
                    frame, move, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
                ).reshape(frame.shape)
                for frame in field
            ]
        )
    crop = field[:, margin : margin + height, margin : margin + width]
    noise_seed = [seed, *(round(abs(v) * 1000) * 2 + (v < 0) for v in (dx, dy))]
    rng = np.random.default_rng(noise_seed)
    video = rng.poisson(np.clip(crop, 0, None) * photons).astype(np.float32) / photons
    w = made.w[:, margin : margin + height, margin : margin + width]
    shifts = w.mean(axis=(1, 2), dtype=np.float64) + np.array([dx, dy])
    return video, shifts
