"""Stage 2: align each recording's temporal average to the center recording's.

For each non-center recording (Flotho et al. 2022, the ``align_full_v3`` MATLAB script):

1. both averages ``(H, W, C)`` are smoothed spatially with a Gaussian of ``sigma_smooth``
   pixels and scaled to [0, 1] by the reference's range;
2. a rigid shift is found by phase cross-correlation with ``cc_upsample`` sub-pixel
   upsampling (Guizar-Sicairos et al. 2008, ``skimage.registration.phase_cross_correlation``);
3. the shift initialises a dense flow refinement (``alpha_between``, ``iterations_between``,
   ``stage2_constancy_assumption``, the session's ``flow_backend``).

The result ``w = [u, v]`` (pixels, ``average[y + v, x + u] ~ reference[y, x]``) is saved as
``w_to_reference.npz`` (arrays ``u`` and ``v``, each ``(H, W)`` float32); the center's is zero.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from labsession.core.atomic import atomic_save_npz
from labsession.core.progress import make_progress
from labsession.errors import MotionSessionError
from labsession.motion.session._config import SessionConfig
from labsession.motion.session._discover import (
    discover_recordings,
    recording_dir,
    recording_log,
    resolve_center,
)
from labsession.motion.session._resume import (
    AVERAGE_NAME,
    W_NAME,
    file_digest,
    read_status,
    stage2_complete,
    update_status,
)

__all__ = ["align_average", "load_displacements", "load_temporal_averages", "run_stage2"]

logger = logging.getLogger(__name__)


def _normalise(image: np.ndarray, low: float, high: float) -> np.ndarray:
    return ((image - low) / max(high - low, 1e-12)).astype(np.float32)


def align_average(
    reference: np.ndarray, average: np.ndarray, config: SessionConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Displacement from one temporal average to the reference average.

    Parameters
    ----------
    reference, average
        ``(H, W)`` or ``(H, W, C)`` temporal averages of the center and of the recording.
    config
        Supplies ``sigma_smooth``, ``cc_upsample`` and the refinement's flow parameters.

    Returns
    -------
    w : numpy.ndarray
        ``(H, W, 2)`` float32 ``[u, v]`` in pixels: ``average[y + v, x + u] ~ reference[y, x]``.
    rigid : numpy.ndarray
        ``(2,)`` the rigid ``(u, v)`` from phase cross-correlation alone.
    """
    from skimage.filters import window
    from skimage.registration import phase_cross_correlation

    from labsession.motion import get_displacement

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(average, dtype=np.float64)
    ref = ref[..., None] if ref.ndim == 2 else ref
    cur = cur[..., None] if cur.ndim == 2 else cur
    if ref.shape != cur.shape:
        raise MotionSessionError(
            f"temporal averages differ in shape: reference {ref.shape}, recording {cur.shape}; "
            "all recordings of a session must have the same frame size and channels"
        )
    sigma = (config.sigma_smooth, config.sigma_smooth, 0.0)
    ref_s = gaussian_filter(ref, sigma) if config.sigma_smooth > 0 else ref
    cur_s = gaussian_filter(cur, sigma) if config.sigma_smooth > 0 else cur
    low, high = float(ref_s.min()), float(ref_s.max())
    ref_n, cur_n = _normalise(ref_s, low, high), _normalise(cur_s, low, high)
    options = config.stage2_options()
    weight = options.channel_weights(ref.shape[-1])
    # Mean removed and Hann-tapered: otherwise the image borders, which do not move, give the
    # correlation a peak at zero shift that beats the true one on small fields of view.
    taper = window("hann", ref.shape[:2])
    ref_mix, cur_mix = ref_n @ weight, cur_n @ weight
    shift, _, _ = phase_cross_correlation(
        (ref_mix - ref_mix.mean()) * taper,
        (cur_mix - cur_mix.mean()) * taper,
        upsample_factor=config.cc_upsample,
        normalization=None,
    )
    rigid = np.array([-shift[1], -shift[0]], dtype=np.float32)
    w_init = np.broadcast_to(rigid, (*ref.shape[:2], 2)).astype(np.float32)
    w = get_displacement(ref_n, cur_n, options, w_init=w_init)
    return np.asarray(w, dtype=np.float32), rigid


def load_temporal_averages(config: SessionConfig, files: list[Path]) -> list[np.ndarray]:
    """Each recording's ``temporal_average.npy`` ``(H, W, C)``; stage 1 must be done.

    Raises
    ------
    MotionSessionError
        Naming the recordings whose stage 1 is missing or unfinished.
    """
    missing = [
        p.name for p in files if read_status(recording_dir(config, p)).get("stage1") != "done"
    ]
    if missing:
        raise MotionSessionError(
            f"stage 1 is not done for {missing}; run stage 1 first "
            "(labsession motion run --config ... --stage 1)"
        )
    return [np.load(recording_dir(config, p) / AVERAGE_NAME, allow_pickle=False) for p in files]


def load_displacements(config: SessionConfig, files: list[Path]) -> list[np.ndarray]:
    """Each recording's ``w_to_reference.npz`` as ``(H, W, 2)``; stage 2 must be done."""
    out = []
    for path in files:
        folder = recording_dir(config, path)
        if read_status(folder).get("stage2") != "done":
            raise MotionSessionError(
                f"stage 2 is not done for {path.name}; run stage 2 first "
                "(labsession motion run --config ... --stage 2)"
            )
        with np.load(folder / W_NAME, allow_pickle=False) as data:
            out.append(np.stack([data["u"], data["v"]], axis=-1).astype(np.float32))
    return out


def _stage2_inputs(config: SessionConfig, folder: Path, center_folder: Path) -> dict[str, object]:
    """What ``w_to_reference.npz`` depends on: both averages' bytes and the parameters."""
    return {
        "average": file_digest(folder / AVERAGE_NAME),
        "center": center_folder.name,
        "center_average": file_digest(center_folder / AVERAGE_NAME),
        "params": [
            config.cc_upsample,
            config.sigma_smooth,
            config.alpha_between,
            config.iterations_between,
            config.stage2_constancy_assumption.value,
            config.flow_backend,
            config.backend_params,
        ],
    }


def run_stage2(
    config: SessionConfig, *, progress: bool | None = None
) -> tuple[int, Path, list[np.ndarray]]:
    """Align every recording's temporal average to the center's (stage 2).

    Runs in this process (one small flow per recording). With ``resume``, a recording whose
    ``w_to_reference.npz`` was computed from the same averages and parameters is loaded.
    ``progress``: a bar over recordings on stderr (``None``: only on a terminal).

    Returns
    -------
    middle_idx : int
        Index of the center recording in sorted order.
    center_file : pathlib.Path
        The center recording.
    displacements : list of numpy.ndarray
        ``(H, W, 2)`` float32 ``[u, v]`` per recording, zero for the center.

    Raises
    ------
    MotionSessionError
        If stage 1 is not done for every recording.
    """
    files = discover_recordings(config)
    middle_idx, center_file = resolve_center(config, files)
    averages = load_temporal_averages(config, files)
    reference = averages[middle_idx]
    center_folder = recording_dir(config, center_file)
    logger.info("stage 2: aligning %d averages to %s", len(files), center_file.name)
    displacements: list[np.ndarray] = []
    with make_progress(unit="recordings", progress=progress) as bar:
        task = bar.add_task("stage 2: align averages", total=len(files))
        for idx, path in enumerate(files):
            folder = recording_dir(config, path)
            inputs = _stage2_inputs(config, folder, center_folder)
            shape = averages[idx].shape[:2]
            with recording_log(folder, "session.log"):
                if config.resume and stage2_complete(folder, inputs, shape):
                    logger.info("stage 2 of %s is complete; loaded", path.name)
                    with np.load(folder / W_NAME, allow_pickle=False) as data:
                        w = np.stack([data["u"], data["v"]], axis=-1).astype(np.float32)
                else:
                    if idx == middle_idx:
                        w = np.zeros((*shape, 2), dtype=np.float32)
                        rigid = np.zeros(2, dtype=np.float32)
                    else:
                        w, rigid = align_average(reference, averages[idx], config)
                    if read_status(folder).get("stage2") is not None:
                        # The file is about to be replaced: a kill before the status below
                        # must not leave the old inputs recorded beside the new file.
                        update_status(folder, stage2=None, stage2_inputs=None)
                    atomic_save_npz(folder / W_NAME, u=w[..., 0], v=w[..., 1])
                    update_status(folder, stage2="done", stage2_inputs=inputs)
                    logger.info(
                        "stage 2 of %s: rigid (u, v) = (%.2f, %.2f) px, mean flow (%.2f, %.2f) px",
                        path.name,
                        rigid[0],
                        rigid[1],
                        float(w[..., 0].mean()),
                        float(w[..., 1].mean()),
                    )
            displacements.append(w)
            bar.update(task, advance=1)
    return middle_idx, center_file, displacements
