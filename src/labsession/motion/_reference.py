"""Reference image: a sharp template from frames registered to their own mean.

Averaging unregistered frames blurs the template by the motion itself; so the chosen frames are
smoothed more strongly, registered to their mean with stiffer regularisation (``alpha + 2``),
and the mean of the *warped raw* frames is taken; this repeats ``passes`` times, each pass
registering to the sharper template of the previous one (as Flow-Registration does once).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from labsession.motion._backends import get_backend
from labsession.motion._checks import as_image
from labsession.motion._options import OFOptions
from labsession.motion._preprocess import intensity_range, preprocess
from labsession.motion._readers import VideoReader
from labsession.motion.warping import warp_video

__all__ = ["cc_initial_flow", "reference_from_options", "register_reference_frames"]

logger = logging.getLogger(__name__)


def register_reference_frames(
    frames: np.ndarray, options: OFOptions, *, passes: int = 2
) -> np.ndarray:
    """Sharp mean ``(H, W, C)`` float32 of ``frames`` ``(N, H, W, C)`` after mutual registration."""
    if len(frames) == 1:
        return frames[0].astype(np.float32)
    n_ch = frames.shape[-1]
    sigma = options.channel_sigma(n_ch) + np.array([1.0, 1.0, 0.5])
    low, high = intensity_range(frames.mean(axis=0), separate=_separate(options))
    proc = preprocess(frames, low=low, high=high, sigma=sigma)
    template = proc.mean(axis=0)
    stiff = options.model_copy(update={"alpha": tuple(a + 2.0 for a in options.alpha)})
    backend = get_backend(stiff)
    weight = options.channel_weights(n_ch)
    reference = frames.mean(axis=0)
    for _ in range(passes):
        w = backend(template, proc, weight=weight, w_init=None)
        warped = warp_video(
            frames, w, interpolation=options.interpolation_method.value, fill=reference
        )
        reference = warped.mean(axis=0)
        template = preprocess(reference, low=low, high=high, sigma=sigma)
    return reference.astype(np.float32)


def _separate(options: OFOptions) -> bool:
    return options.channel_normalization.value == "separate"


def _read_image(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"reference image not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        image = tifffile.imread(path)
    elif suffix == ".npy":
        image = np.load(path)
    else:
        raise ValueError(f"{path}: reference image must be .tif, .tiff or .npy, got {suffix!r}")
    return image


def reference_from_options(reader: VideoReader, options: OFOptions) -> np.ndarray:
    """Reference ``(H, W, C)`` float32 for ``reader`` as ``options.reference_frames`` asks."""
    n_frames, height, width, n_ch = reader.shape
    ref = options.reference_frames
    if isinstance(ref, np.ndarray | str | Path):
        image = ref if isinstance(ref, np.ndarray) else _read_image(Path(ref))
        image = as_image(np.asarray(image), name="reference")
        if image.shape != (height, width, n_ch):
            raise ValueError(
                f"reference has shape {image.shape} but the video's frames are "
                f"{(height, width, n_ch)}"
            )
        return image
    requested = np.unique(np.asarray(ref, dtype=np.int64))
    if len(requested) == 0:
        raise ValueError("reference_frames is empty; give frame indices, an image or an array")
    if requested.min() < 0:
        raise ValueError(f"reference_frames holds negative indices: {requested[requested < 0]}")
    indices = requested[requested < n_frames]
    if len(indices) == 0:
        # A video shorter than the first requested frame (the default starts at frame 50):
        # use as many frames as were asked for, from the start.
        indices = np.arange(min(n_frames, len(requested)))
        logger.warning(
            "reference frames %d..%d lie beyond the video's %d frames; using frames 0..%d",
            requested.min(),
            requested.max(),
            n_frames,
            indices[-1],
        )
    elif len(indices) < len(requested):
        logger.info("reference frames cut to the video's %d frames", n_frames)
    logger.info("building the reference from %d frames", len(indices))
    return register_reference_frames(reader.read_frames(indices), options)


def cc_initial_flow(
    reference: np.ndarray, frames: np.ndarray, weight: np.ndarray, *, upsample: int
) -> np.ndarray:
    """Rigid pre-alignment by phase cross-correlation, as an initial flow ``(N, H, W, 2)``.

    ``reference`` (H, W, C) and ``frames`` (N, H, W, C) are preprocessed images; ``upsample``
    is the subpixel factor (1 = whole pixels).
    """
    from skimage.registration import phase_cross_correlation

    ref = reference @ weight
    out = np.empty((*frames.shape[:3], 2), dtype=np.float32)
    for t, frame in enumerate(frames):
        shift, _, _ = phase_cross_correlation(
            ref, frame @ weight, upsample_factor=upsample, normalization=None
        )
        out[t, ..., 0] = -shift[1]
        out[t, ..., 1] = -shift[0]
    return out
