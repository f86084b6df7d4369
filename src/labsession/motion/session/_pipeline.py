"""The whole session in one call, and the per-recording state table (``motion status``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from labsession.errors import MotionSessionError
from labsession.motion.session._config import SessionConfig
from labsession.motion.session._discover import discover_recordings, recording_dir, resolve_center
from labsession.motion.session._executors import make_executor
from labsession.motion.session._resume import (
    AVERAGE_NAME,
    W_NAME,
    aligned_complete,
    final_complete,
    read_status,
    stage1_complete,
    stage1_options_record,
    video_frames,
)

__all__ = ["run_session", "session_state"]

logger = logging.getLogger(__name__)


def run_session(
    config: SessionConfig, *, stages: Iterable[int] = (1, 2, 3), progress: bool | None = None
) -> np.ndarray | None:
    """Run the given stages in order; returns the final mask ``(H, W)`` bool if stage 3 ran.

    With ``scheduler="array"``, stage 1 processes only this array task's recording, so it
    cannot be combined with stages 2 and 3 in one call: run those in a job that depends on the
    whole array (see :func:`write_slurm_scripts`). ``progress``: bars on stderr, ``None``
    (default) only when stderr is a terminal, ``True`` always, ``False`` never; stage 1 shows
    the recordings and the frames of each recording in progress.

    Raises
    ------
    MotionSessionError
        For ``scheduler="array"`` with stage 1 and a later stage together.
    """
    from labsession.motion.session._stage1 import run_stage1
    from labsession.motion.session._stage2 import run_stage2
    from labsession.motion.session._stage3 import run_stage3

    stages = sorted(set(stages))
    bad = [s for s in stages if s not in (1, 2, 3)]
    if bad:
        raise ValueError(f"stages must be among 1, 2, 3; got {bad}")
    if config.scheduler == "array" and 1 in stages and len(stages) > 1:
        raise MotionSessionError(
            "with scheduler='array' each array task runs stage 1 for its recording "
            "(labsession motion run --config ... --stage 1 --array) and stages 2-3 run in one "
            "job after the whole array; `labsession motion submit --slurm` writes both jobs"
        )
    middle_idx = displacements = None
    final = None
    # One Dask cluster for stages 1 and 3 (starting one costs seconds); the local pool is
    # created per stage by each stage itself.
    wants_workers = config.scheduler == "dask" and (1 in stages or 3 in stages)
    shared = make_executor(config) if wants_workers else None
    try:
        if 1 in stages:
            run_stage1(config, progress=progress, executor=shared)
        if 2 in stages:
            middle_idx, _, displacements = run_stage2(config, progress=progress)
        if 3 in stages:
            final = run_stage3(
                config, middle_idx, displacements, progress=progress, executor=shared
            )
    finally:
        if shared is not None:
            shared.close()
    return final


def _stage2_state(config: SessionConfig, folder: Path, center_folder: Path) -> str:
    from labsession.motion.session._stage2 import _stage2_inputs

    status = read_status(folder)
    if status.get("stage2") != "done":
        return "pending"
    try:
        current = _stage2_inputs(config, folder, center_folder)
    except OSError:
        return "stale"
    if status.get("stage2_inputs") != current or not (folder / W_NAME).is_file():
        return "stale"
    return "done"


def session_state(config: SessionConfig) -> dict[str, Any]:
    """What each stage has finished, verified as a resumed run would verify it.

    Returns
    -------
    dict
        ``recordings``: one row per recording with ``recording``, ``center`` (bool),
        ``frames``, ``stage1``, ``stage2``, ``stage3`` (each ``done``, ``pending``,
        ``running``, ``incomplete: <reason>`` or ``stale``); ``session``: the stage-3 state
        of the final results: ``done`` with ``valid_pixels`` only when the final mask files
        are complete and were made from the current results of every recording
        (:func:`~labsession.motion.session._resume.final_complete`), ``running`` while stage 3
        runs (or was interrupted), else ``pending`` or ``pending: <reason>``.
    """
    from labsession.motion.session._stage3 import _digest, aligned_video_path

    files = discover_recordings(config)
    middle_idx, center = resolve_center(config, files)
    center_folder = recording_dir(config, center)
    reference = None
    if (center_folder / AVERAGE_NAME).is_file():
        reference = np.load(center_folder / AVERAGE_NAME, allow_pickle=False)
    rows = []
    inputs: list[dict[str, Any] | None] = []  # each recording's stage-3 record, when done
    for idx, path in enumerate(files):
        folder = recording_dir(config, path)
        status = read_status(folder)
        shape = video_frames(path)
        frames = shape[0] if shape else None
        row: dict[str, Any] = {"recording": path.name, "center": idx == middle_idx}
        row["frames"] = frames
        s1 = status.get("stage1")
        if s1 is None:
            row["stage1"] = "pending"
        elif s1 == "running":
            row["stage1"] = "running (or interrupted)"
        else:
            record = stage1_options_record(config.stage1_options(path, folder))
            ok, reason = stage1_complete(folder, path, frames or -1, record)
            row["stage1"] = "done" if ok else f"incomplete: {reason}"
        row["stage2"] = (
            _stage2_state(config, folder, center_folder) if row["stage1"] == "done" else "pending"
        )
        row["stage3"] = "pending"
        record = None
        if row["stage2"] == "done" and reference is not None:
            with np.load(folder / W_NAME, allow_pickle=False) as data:
                w = np.stack([data["u"], data["v"]], axis=-1).astype(np.float32)
            expected = {
                "target": aligned_video_path(config, path).name,
                "stage1_run": status.get("stage1_run"),
                "w": _digest(w),
                "reference": _digest(reference),
            }
            target = aligned_video_path(config, path)
            ok, reason = aligned_complete(target, folder, expected, frames or -1)
            if ok:
                row["stage3"] = "done"
                record = expected
            elif status.get("stage3_aligned") is not None:
                row["stage3"] = f"stale: {reason}"
        inputs.append(record)
        rows.append(row)
    names = [path.name for path in files]
    return {"recordings": rows, "session": _final_state(config, names, middle_idx, inputs)}


def _final_state(
    config: SessionConfig, names: list[str], middle_idx: int, inputs: list[dict[str, Any] | None]
) -> dict[str, Any]:
    """The session row of ``motion status``: the final mask files, verified."""
    final = read_status(config.final_dir)
    if final.get("stage3") == "running":
        return {"stage3": "running"}
    if final.get("stage3") != "done":
        return {"stage3": "pending"}
    ok, reason = final_complete(config.final_dir, names, middle_idx, inputs)
    if not ok:
        return {"stage3": f"pending: {reason}"}
    return {"stage3": "done", "valid_pixels": final.get("valid_pixels")}
