"""Synthetic 2-photon videos with known motion, for tests, benchmarks and examples.

The scene has sparse bright cells (soma-like blobs) on a textured neuropil background; channel 0
behaves like a calcium indicator (cells flash with spike-triggered transients that decay over
about a second), channel 1 like a static structural label. Each frame is the scene displaced by
a smooth, known field: slow drift + rigid jitter (breathing/heartbeat-like) + a low-frequency
non-rigid part, then photon shot noise (Poisson) is applied.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
from scipy.ndimage import fourier_shift, gaussian_filter

__all__ = [
    "SyntheticVideo",
    "endpoint_error",
    "make_2p_video",
    "shift_image",
    "textured_image",
]


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
    """A synthetic recording and its ground truth.

    Attributes
    ----------
    video
        ``(T, H, W, C)`` float32 noisy moving frames (mean photon count per pixel scale).
    reference
        ``(H, W, C)`` float32 noise-free, motion-free scene at mean activity.
    w
        ``(T, H, W, 2)`` float32 true displacement ``[u, v]`` in pixels:
        ``video[t, y + v, x + u] = scene_t[y, x]`` (the convention of ``compensate_arr``).
    scene
        ``(T, H, W, C)`` float32 noise-free, motion-free frames.
    """

    video: np.ndarray
    reference: np.ndarray
    w: np.ndarray
    scene: np.ndarray


def _texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    coarse = gaussian_filter(rng.standard_normal(shape), 6.0)
    fine = gaussian_filter(rng.standard_normal(shape), 1.5)
    tex = coarse / (coarse.std() + 1e-9) + 0.5 * fine / (fine.std() + 1e-9)
    return 0.25 + 0.08 * tex


def _cells(
    rng: np.random.Generator, shape: tuple[int, int], n_cells: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cell footprints ``(n_cells, H, W)`` and a vessel-like structure map ``(H, W)``."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    footprints = np.zeros((n_cells, height, width), dtype=np.float32)
    for k in range(n_cells):
        cy, cx = rng.uniform(4, height - 4), rng.uniform(4, width - 4)
        radius = rng.uniform(2.5, 4.5)
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2
        footprints[k] = np.exp(-d2) * (1.0 - 0.5 * np.exp(-4 * d2))  # brighter rim, dim nucleus
    return footprints, footprints.sum(axis=0)


def _activity(rng: np.random.Generator, n_cells: int, n_frames: int) -> np.ndarray:
    """Calcium-like traces ``(n_cells, T)``: Poisson spikes convolved with a decay, >= 0."""
    spikes = rng.poisson(0.03, size=(n_cells, n_frames)).astype(np.float64)
    kernel = np.exp(-np.arange(min(n_frames, 60)) / 10.0)
    traces = np.stack([np.convolve(s, kernel)[:n_frames] for s in spikes])
    return 0.4 + traces


def _displacements(
    rng: np.random.Generator,
    n_frames: int,
    shape: tuple[int, int],
    max_shift: float,
    nonrigid: float,
    drift: float,
) -> np.ndarray:
    height, width = shape
    t = np.arange(n_frames)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((n_frames, height, width, 2), dtype=np.float32)
    jitter = gaussian_filter(rng.standard_normal((n_frames, 2)), sigma=(1.5, 0))
    jitter *= max_shift / (np.abs(jitter).max() + 1e-9)
    drift_dir = rng.standard_normal(2)
    drift_dir /= np.linalg.norm(drift_dir)
    ramp = drift * (t / max(n_frames - 1, 1))[:, None] * drift_dir
    freqs = rng.uniform(0.5, 1.5, size=(2, 2)) * 2 * np.pi / np.array([height, width])
    phases = rng.uniform(0, 2 * np.pi, size=(2, 2))
    temporal = np.sin(2 * np.pi * t / max(n_frames / 2.0, 4.0) + rng.uniform(0, 2 * np.pi))
    for k in range(2):
        field = np.sin(freqs[k, 0] * yy + phases[k, 0]) * np.cos(freqs[k, 1] * xx + phases[k, 1])
        out[..., k] = (jitter[:, k] + ramp[:, k])[:, None, None] + nonrigid * temporal[
            :, None, None
        ] * field
    return out


def _render(scene: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Frame ``f`` with ``f(p + w(p)) = scene(p)``: invert ``q = p + w(p)`` by fixed point."""
    height, width = w.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    src_x, src_y = grid_x.copy(), grid_y.copy()
    for _ in range(8):
        w_at = cv2.remap(w, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        src_x = grid_x - w_at[..., 0]
        src_y = grid_y - w_at[..., 1]
    out = cv2.remap(scene, src_x, src_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return out.reshape(scene.shape)


def make_2p_video(
    *,
    n_frames: int = 100,
    shape: tuple[int, int] = (128, 128),
    n_channels: int = 2,
    n_cells: int | None = None,
    max_shift: float = 3.0,
    nonrigid: float = 1.0,
    drift: float = 2.0,
    photons: float = 100.0,
    seed: int = 0,
) -> SyntheticVideo:
    """Generate a seeded synthetic 2-photon recording with ground-truth motion.

    Parameters
    ----------
    n_frames, shape
        Video size ``T`` and ``(H, W)``.
    n_channels
        1 (functional) or 2 (functional + structural).
    n_cells
        Number of cells; default one per ~400 pixels.
    max_shift
        Peak rigid jitter in pixels.
    nonrigid
        Amplitude in pixels of the smooth non-rigid component.
    drift
        Total slow drift in pixels over the video.
    photons
        Photons per unit intensity; lower means noisier (Poisson).
    seed
        Seed of :func:`numpy.random.default_rng`: the same seed gives the same video.

    Returns
    -------
    SyntheticVideo
    """
    if n_channels not in (1, 2):
        raise ValueError(f"n_channels must be 1 or 2, got {n_channels}")
    if n_frames < 1 or min(shape) < 16:
        raise ValueError(f"need n_frames >= 1 and frames >= 16x16, got {n_frames}, {shape}")
    rng = np.random.default_rng(seed)
    height, width = shape
    n_cells = n_cells if n_cells is not None else max(1, height * width // 400)
    footprints, structure = _cells(rng, shape, n_cells)
    traces = _activity(rng, n_cells, n_frames)
    backgrounds = [_texture(rng, shape) for _ in range(n_channels)]
    scene = np.empty((n_frames, height, width, n_channels), dtype=np.float32)
    scene[..., 0] = backgrounds[0] + np.einsum("kt,khw->thw", traces, footprints)
    if n_channels == 2:
        scene[..., 1] = backgrounds[1] + 0.8 * structure
    w = _displacements(rng, n_frames, shape, max_shift, nonrigid, drift)
    video = np.empty_like(scene)
    for t in range(n_frames):
        video[t] = _render(np.ascontiguousarray(scene[t]), w[t])
    video = rng.poisson(np.clip(video, 0, None) * photons).astype(np.float32) / photons
    reference = np.empty((height, width, n_channels), dtype=np.float32)
    reference[..., 0] = backgrounds[0] + np.einsum("k,khw->hw", traces.mean(axis=1), footprints)
    if n_channels == 2:
        reference[..., 1] = scene[0, ..., 1]
    return SyntheticVideo(video=video, reference=reference, w=w, scene=scene)


def textured_image(shape: tuple[int, int] = (64, 64), *, seed: int = 0) -> np.ndarray:
    """Smooth random texture scaled to [0, 1], float32 ``(H, W)`` (for flow tests)."""
    rng = np.random.default_rng(seed)
    img = gaussian_filter(rng.random(shape), 2.0) + 0.5 * gaussian_filter(rng.random(shape), 5.0)
    img = (img - img.min()) / (img.max() - img.min())
    return img.astype(np.float32)


def shift_image(image: np.ndarray, *, u: float, v: float) -> np.ndarray:
    """``image`` ``(H, W)`` moved so ``out[y + v, x + u] = image[y, x]`` (periodic, Fourier)."""
    out = np.fft.ifftn(fourier_shift(np.fft.fftn(image), (v, u))).real
    return out.astype(np.float32)


def endpoint_error(w: np.ndarray, truth: np.ndarray, *, margin: int = 8) -> float:
    """Mean endpoint error in pixels of ``w`` against ``truth`` ``(..., H, W, 2)``.

    ``margin`` pixels along each border are left out (flow there is extrapolated).
    """
    diff = np.asarray(w, np.float64) - np.asarray(truth, np.float64)
    if margin:
        diff = diff[..., margin:-margin, margin:-margin, :]
    return float(np.hypot(diff[..., 0], diff[..., 1]).mean())
