"""Stage 3: the session-wide valid mask and every recording re-projected onto the reference.

For each recording, the per-frame valid masks (``idx.hdf``) are ANDed over time, warped onto
the reference grid by the stage-2 displacement (:func:`imregister_binary`: nearest neighbour,
False where the source is outside the view) and intersected over recordings: a pixel of the
final mask is valid in every frame of every recording. Results in ``final_results``:
``final_valid_idx.png``, ``final_valid_idx.npz``, ``final_valid_idx.mat`` (MATLAB, 1-based
``middle_idx``), ``<stem>_valid_idx.png``, ``<stem>_valid_idx_aligned.png``,
``aligned_<stem>.<ext>``, ``session_qc.png`` and ``status.json``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from labsession.core.atomic import atomic_path, atomic_save_npz
from labsession.core.progress import make_progress
from labsession.errors import MotionSessionError
from labsession.motion.session._config import SessionConfig
from labsession.motion.session._discover import (
    discover_recordings,
    recording_dir,
    recording_log,
    resolve_center,
)
from labsession.motion.session._executors import LocalExecutor, SessionExecutor, make_executor
from labsession.motion.session._masks import imregister_binary, temporal_valid_mask
from labsession.motion.session._qc import save_session_qc
from labsession.motion.session._resume import (
    COMPENSATED_NAME,
    VALID_NAME,
    aligned_complete,
    clean_partial_files,
    read_status,
    update_status,
    video_frames,
)
from labsession.motion.session._stage2 import load_displacements, load_temporal_averages

__all__ = ["aligned_video_path", "reproject_recording", "run_stage3", "save_mask_png"]

logger = logging.getLogger(__name__)

#: Below this many pixel-frames in all, the local scheduler re-projects in-process (a pool of
#: spawned workers costs seconds to start; warping is fast).
INPROCESS_VOXELS = 64 * 2**20


def save_mask_png(mask: np.ndarray, path: Path) -> Path:
    """Write a ``(H, W)`` bool mask as an 8-bit PNG (255 = valid), atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(tmp, format="PNG")
    return Path(path)


def aligned_video_path(config: SessionConfig, input_file: Path) -> Path:
    """``<final_results>/aligned_<stem>.<ext>`` for ``align_output_format``."""
    from labsession.motion._writers import SUFFIXES

    suffix = SUFFIXES[str(config.align_output_format)]
    return config.final_dir / f"aligned_{Path(input_file).stem}{suffix}"


def reproject_recording(
    compensated: Path,
    target: Path,
    w: np.ndarray,
    reference: np.ndarray,
    *,
    chunk_size: int = 64,
    output_format: str = "TIFF",
    log_folder: Path | None = None,
) -> dict[str, Any]:
    """Warp a compensated video onto the reference grid, ``chunk_size`` frames at a time.

    Parameters
    ----------
    compensated
        Video ``(T, H, W, C)`` (stage 1's ``compensated.hdf5``).
    target
        Output file, published atomically when every frame is written.
    w
        ``(H, W, 2)`` displacement ``[u, v]`` to the reference in pixels (stage 2).
    reference
        ``(H, W, C)`` reference average; fills pixels whose source is outside the view.
    chunk_size, output_format
        Frames per read/warp/write step; a registered format (``HDF5``, ``TIFF``, ``MAT``,
        ``NPZ``, ``ZARR`` or one added with ``register_video_format``).
    log_folder
        Where to append the recording's ``session.log`` (default: none).

    Returns
    -------
    dict
        ``target``, ``n_frames``, ``seconds``.
    """
    import contextlib

    from labsession.motion import VideoWriter, open_video
    from labsession.motion.warping import warp_video

    started = time.perf_counter()
    log = recording_log(log_folder, "session.log") if log_folder else contextlib.nullcontext()
    with log, open_video(compensated) as reader:
        n_frames = reader.shape[0]
        meta = {"source": str(compensated), "stage": "session stage 3 re-projection"}
        with VideoWriter(target, output_format, shape=reader.shape, metadata=meta) as writer:
            for start in range(0, n_frames, chunk_size):
                batch = reader[start : start + chunk_size]
                fields = np.broadcast_to(w, (len(batch), *w.shape))
                writer.write(warp_video(batch, fields, interpolation="cubic", fill=reference))
        seconds = time.perf_counter() - started
        logger.info("re-projected %s to %s in %.1f s", compensated, target.name, seconds)
    return {"target": target, "n_frames": n_frames, "seconds": seconds}


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes(), usedforsecurity=False).hexdigest()


def _save_results(
    config: SessionConfig,
    files: list[Path],
    final_valid: np.ndarray,
    aligned: list[np.ndarray],
    per_seq: list[np.ndarray],
    displacements: list[np.ndarray],
    averages: list[np.ndarray],
    middle_idx: int,
    aligned_paths: list[Path],
) -> dict[str, Path]:
    from scipy.io import savemat

    out = config.final_dir
    compensated = np.array([str(recording_dir(config, p) / COMPENSATED_NAME) for p in files])
    arrays = {
        "final_valid": final_valid,
        "aligned_valid_masks": np.stack(aligned),
        "per_seq_valid_masks": np.stack(per_seq),
        "displacement_fields_u": np.stack([w[..., 0] for w in displacements]),
        "displacement_fields_v": np.stack([w[..., 1] for w in displacements]),
        "temporal_averages": np.stack(averages),
        "compensated_h5_paths": compensated,
        "reference_average": averages[middle_idx],
        "middle_idx": np.int64(middle_idx),
        "aligned_video_paths": np.array([str(p) for p in aligned_paths]),
    }
    written = {"npz": atomic_save_npz(out / "final_valid_idx.npz", **arrays)}
    mat = dict(arrays, middle_idx=np.int64(middle_idx + 1))  # MATLAB counts from 1
    mat["compensated_h5_paths"] = np.array(compensated, dtype=object)
    mat["aligned_video_paths"] = np.array([str(p) for p in aligned_paths], dtype=object)
    with atomic_path(out / "final_valid_idx.mat") as tmp, open(tmp, "wb") as f:
        savemat(f, mat, do_compression=True)
    written["mat"] = out / "final_valid_idx.mat"
    written["png"] = save_mask_png(final_valid, out / "final_valid_idx.png")
    for path, mask, warped in zip(files, per_seq, aligned, strict=True):
        save_mask_png(mask, out / f"{path.stem}_valid_idx.png")
        save_mask_png(warped, out / f"{path.stem}_valid_idx_aligned.png")
    return written


def run_stage3(
    config: SessionConfig,
    middle_idx: int | None = None,
    displacements: list[np.ndarray] | None = None,
    *,
    progress: bool | None = None,
    executor: SessionExecutor | None = None,
) -> np.ndarray:
    """Compute the session's final valid mask and re-project every recording (stage 3).

    Parameters
    ----------
    config
        The session configuration.
    middle_idx
        Center index from :func:`run_stage2`; default: resolved from the config.
    displacements
        ``(H, W, 2)`` per recording from :func:`run_stage2`; default: read from the
        ``w_to_reference.npz`` files.
    progress
        A bar over the re-projections on stderr: ``None`` only when stderr is a terminal,
        ``True`` always, ``False`` never.
    executor
        Where the re-projections run (default: the scheduler's executor). When that is the
        built-in local pool (``"local"``, ``"array"``), a small session runs in-process instead:
        starting worker processes would cost more than it saves. Dask and registered executors
        always get the re-projections.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool: True where every frame of every recording is valid after alignment.

    Raises
    ------
    MotionSessionError
        If stage 1 or 2 is missing, or a re-projection failed (all failures are named).
    """
    started = time.perf_counter()
    files = discover_recordings(config)
    center_idx, _ = resolve_center(config, files)
    middle_idx = center_idx if middle_idx is None else int(middle_idx)
    averages = load_temporal_averages(config, files)
    if displacements is None:
        displacements = load_displacements(config, files)
    if len(displacements) != len(files):
        raise MotionSessionError(
            f"{len(displacements)} displacement fields for {len(files)} recordings; rerun stage 2"
        )
    final_dir = config.final_dir
    final_dir.mkdir(parents=True, exist_ok=True)
    clean_partial_files(final_dir)  # temporaries of a killed earlier run
    update_status(final_dir, stage3="running", stage3_started=datetime.now(UTC).isoformat())

    per_seq = [temporal_valid_mask(recording_dir(config, p) / VALID_NAME) for p in files]
    aligned = [
        imregister_binary(mask, w[..., 0], w[..., 1])
        for mask, w in zip(per_seq, displacements, strict=True)
    ]
    final_valid = np.logical_and.reduce(aligned)
    logger.info(
        "stage 3: final mask keeps %d of %d pixels", int(final_valid.sum()), final_valid.size
    )

    reference = averages[middle_idx]
    targets = [aligned_video_path(config, p) for p in files]
    pending: list[int] = []
    expected: dict[int, dict[str, Any]] = {}
    for idx, path in enumerate(files):
        folder = recording_dir(config, path)
        status = read_status(folder)
        expected[idx] = {
            "target": targets[idx].name,
            "stage1_run": status.get("stage1_run"),
            "w": _digest(displacements[idx]),
            "reference": _digest(reference),
        }
        if config.resume:
            done, reason = aligned_complete(targets[idx], folder, expected[idx], status["n_frames"])
            if done:
                logger.info("re-projection of %s is complete; skipped", path.name)
                continue
            logger.info("re-projecting %s: %s", path.name, reason)
        if status.get("stage3_aligned") is not None:
            # Its video is about to be replaced: a kill after that, before the new record, must
            # not leave the old record beside the new video.
            update_status(folder, stage3_aligned=None)
        pending.append(idx)

    failures: dict[str, BaseException] = {}
    own = executor is None and bool(pending)
    if own:
        voxels = sum(
            read_status(recording_dir(config, files[i])).get("n_frames", 0) for i in pending
        )
        voxels *= int(np.prod(reference.shape))
        executor = make_executor(config)
        if type(executor) is LocalExecutor and voxels < INPROCESS_VOXELS:
            executor.close()  # starting worker processes would cost more than it saves
            executor = LocalExecutor(1)
    try:
        with make_progress(unit="recordings", progress=progress) as bar:
            task = bar.add_task("stage 3: re-project", total=len(files))
            bar.update(task, advance=len(files) - len(pending))
            arguments = [
                (
                    recording_dir(config, files[i]) / COMPENSATED_NAME,
                    targets[i],
                    displacements[i],
                    reference,
                    {
                        "chunk_size": config.align_chunk_size,
                        "output_format": str(config.align_output_format),
                        "log_folder": recording_dir(config, files[i]),
                    },
                )
                for i in pending
            ]
            outcomes = executor.map_unordered(_reproject_task, arguments) if pending else []
            for position, _result, error in outcomes:
                idx = pending[position]
                if error is not None:
                    logger.error("re-projection of %s failed: %s", files[idx].name, error)
                    failures[files[idx].name] = error
                else:
                    update_status(recording_dir(config, files[idx]), stage3_aligned=expected[idx])
                bar.update(task, advance=1)
    finally:
        if own and executor is not None:
            executor.close()
    if failures:
        detail = "; ".join(f"{k}: {type(v).__name__}: {v}" for k, v in failures.items())
        raise MotionSessionError(
            f"stage 3 re-projection failed for {len(failures)} of {len(files)} recording(s): "
            f"{detail}"
        ) from next(iter(failures.values()))
    for idx, target in enumerate(targets):
        shape = video_frames(target)
        n_frames = read_status(recording_dir(config, files[idx])).get("n_frames")
        if shape is None or shape[0] != n_frames:
            raise MotionSessionError(f"{target}: expected {n_frames} frames, found {shape}")

    _save_results(
        config, files, final_valid, aligned, per_seq, displacements, averages, middle_idx, targets
    )
    save_session_qc(
        final_dir / "session_qc.png",
        averages=averages,
        displacements=displacements,
        final_valid=final_valid,
        middle_idx=middle_idx,
        names=[p.stem for p in files],
    )
    seconds = time.perf_counter() - started
    update_status(
        final_dir,
        stage3="done",
        stage3_finished=datetime.now(UTC).isoformat(),
        stage3_seconds=round(seconds, 3),
        recordings=[p.name for p in files],
        middle_idx=middle_idx,
        valid_pixels=int(final_valid.sum()),
        inputs=[expected[idx] for idx in range(len(files))],  # what `motion status` checks
    )
    return final_valid


def _reproject_task(
    compensated: Path, target: Path, w: np.ndarray, reference: np.ndarray, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Executor entry point (positional arguments only)."""
    return reproject_recording(compensated, target, w, reference, **kwargs)
