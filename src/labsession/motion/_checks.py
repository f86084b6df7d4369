"""Validation at the public boundary: arrays (shapes, emptiness, finiteness), backend_params."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from labsession.core._config_errors import suggest_key
from labsession.errors import ConfigError

__all__ = ["as_image", "as_video", "check_backend_params"]


def _finite(array: np.ndarray, name: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite values; motion correction needs finite "
            "intensities (replace them, e.g. with numpy.nan_to_num, before registering)"
        )


def as_video(video: np.ndarray, *, name: str = "video", check_finite: bool = True) -> np.ndarray:
    """Return ``video`` as float32 ``(T, H, W, C)``.

    Parameters
    ----------
    video
        ``(T, H, W)`` (one channel) or ``(T, H, W, C)``.

    Raises
    ------
    ValueError
        Wrong number of dimensions, no frames, images smaller than 2x2, NaN or inf values.
    """
    array = np.asarray(video)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise ValueError(
            f"{name} must have shape (T, H, W) or (T, H, W, C), got {array.ndim} dimensions "
            f"with shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 frames (shape {array.shape})")
    if min(array.shape[1:3]) < 2 or array.shape[3] == 0:
        raise ValueError(f"{name} frames must be at least 2x2 with >= 1 channel, got {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    if check_finite:
        _finite(array, name)
    return array


def as_image(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Return ``image`` as float32 ``(H, W, C)`` from ``(H, W)`` or ``(H, W, C)``.

    Raises
    ------
    ValueError
        Wrong number of dimensions, fewer than 2x2 pixels, NaN or inf values.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C), got shape {array.shape}")
    if min(array.shape[:2]) < 2 or array.shape[2] == 0:
        raise ValueError(f"{name} must be at least 2x2 with >= 1 channel, got {array.shape}")
    array = array.astype(np.float32, copy=False)
    _finite(array, name)
    return array


def check_backend_params(backend: str, params: Mapping[str, object], known: Iterable[str]) -> None:
    """Refuse ``backend_params`` keys that the flow backend ``backend`` does not take.

    Parameters
    ----------
    backend
        The backend's name, for the message.
    params
        ``OFOptions.backend_params``.
    known
        The keys the backend reads.

    Raises
    ------
    ConfigError
        Naming the unknown keys, the known ones and the closest known key.
    """
    known = sorted(known)
    unknown = sorted(str(key) for key in set(params) - set(known))
    if not unknown:
        return
    takes = f"known: {', '.join(known)}" if known else f"{backend} takes none"
    hint = suggest_key(unknown[0], known) if known else " (its settings are OFOptions fields)"
    raise ConfigError(f"unknown backend_params for {backend}: {unknown}; {takes}{hint}")
