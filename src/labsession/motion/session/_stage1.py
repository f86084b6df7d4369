"""Stage 1: motion-correct each recording of the session into its own output folder.

``<output_root>/<stem>/`` receives ``compensated.hdf5`` (dataset ``mov``, ``(T, H, W, C)``
float32), ``idx.hdf`` (dataset ``valid``, ``(T, H, W, 1)`` uint8, 1 = in view),
``temporal_average.npy`` (``(H, W, C)`` float32), the engine's ``average.npy``,
``reference.npy``, ``statistics.npz`` and ``options.json``, ``status.json`` and the log
``session.log``. Recordings run in parallel (process pool or Dask) or one per HPC array task.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labsession.core.atomic import atomic_save_npy, fsync_dir
from labsession.errors import MotionSessionError
from labsession.motion.session._config import SessionConfig
from labsession.motion.session._discover import discover_recordings, recording_dir, recording_log
from labsession.motion.session._executors import SessionExecutor, make_executor
from labsession.motion.session._resume import (
    AVERAGE_NAME,
    COMPENSATED_NAME,
    clean_partial_files,
    input_fingerprint,
    stage1_complete,
    stage1_options_record,
    update_status,
    video_frames,
)
from labsession.motion.session._stage1_progress import Stage1Progress

__all__ = [
    "ARRAY_TASK_VARIABLES",
    "compensate_one",
    "get_array_task_id",
    "run_stage1",
    "run_stage1_array",
]

logger = logging.getLogger(__name__)

#: Environment variables holding the 1-based array task index, in the order they are read.
ARRAY_TASK_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SGE_TASK_ID", "PBS_ARRAY_INDEX")

#: Name of the per-recording log file in its output folder.
LOG_NAME = "session.log"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def compensate_one(
    config: SessionConfig,
    input_file: Path,
    report: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run (or, when complete, skip) stage 1 for one recording; the task each worker runs.

    Parameters
    ----------
    config
        The session configuration.
    input_file
        The recording.
    report
        Called as ``report(str(input_file), done, total)`` with the frames registered so far
        (after each buffer, and once with 0 before the first); must be picklable when the
        task runs in another process.

    Returns
    -------
    dict
        ``stem``, ``folder``, ``state`` (``"done"`` or ``"skipped"``), ``n_frames`` and
        ``seconds``.
    """
    input_file = Path(input_file)
    folder = recording_dir(config, input_file)
    started = time.perf_counter()
    with recording_log(folder, LOG_NAME):
        shape = video_frames(input_file)
        if shape is None:
            raise MotionSessionError(f"{input_file}: the recording cannot be read as a video")
        n_frames = shape[0]
        options = config.stage1_options(input_file, folder)
        record = stage1_options_record(options)
        if config.resume:
            complete, reason = stage1_complete(folder, input_file, n_frames, record)
            if complete:
                logger.info("stage 1 of %s is already complete; skipped", input_file.name)
                return {
                    "stem": input_file.stem,
                    "folder": folder,
                    "state": "skipped",
                    "n_frames": n_frames,
                    "seconds": 0.0,
                }
            logger.info("stage 1 of %s (re)starts: %s", input_file.name, reason)
        clean_partial_files(folder)
        # Later stages depend on this output: mark them stale before anything is rewritten.
        update_status(
            folder,
            stage1="running",
            stage1_started=_now(),
            pid=os.getpid(),
            stage2=None,
            stage3_aligned=None,
        )
        logger.info(
            "stage 1: correcting %s (%d frames, backend %s, quality %s)",
            input_file.name,
            n_frames,
            options.flow_backend,
            options.quality_setting.value,
        )
        from labsession.motion import compensate_recording

        on_frames = None
        if report is not None:
            report(str(input_file), 0, n_frames)
            on_frames = functools.partial(report, str(input_file))  # (done, total)
        result = compensate_recording(options, progress=False, on_frames=on_frames)
        written = result.files["compensated"]
        target = folder / COMPENSATED_NAME
        if written != target:  # the engine names HDF5 output compensated.h5
            os.replace(written, target)
            fsync_dir(folder)
        atomic_save_npy(folder / AVERAGE_NAME, result.average)
        out_shape = video_frames(target)
        if out_shape is None or out_shape[0] != n_frames:
            raise MotionSessionError(
                f"{target}: the engine wrote {out_shape} frames for an input of {n_frames}"
            )
        seconds = time.perf_counter() - started
        update_status(
            folder,
            stage1="done",
            stage1_finished=_now(),
            stage1_seconds=round(seconds, 3),
            stage1_run=uuid.uuid4().hex,
            input=input_fingerprint(input_file),
            n_frames=n_frames,
            frame_shape=list(shape[1:]),
            stage1_options=record,
        )
        logger.info("stage 1 of %s done in %.1f s", input_file.name, seconds)
    return {
        "stem": input_file.stem,
        "folder": folder,
        "state": "done",
        "n_frames": n_frames,
        "seconds": seconds,
    }


def _raise_failures(stage: str, failures: Mapping[str, BaseException], total: int) -> None:
    if not failures:
        return
    from concurrent.futures.process import BrokenProcessPool

    detail = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failures.items())
    hint = "see session.log in each recording's output folder; rerun to resume"
    if any(isinstance(exc, BrokenProcessPool) for exc in failures.values()):
        hint = (
            "a worker process died: if this runs from a script, put the call under "
            "`if __name__ == '__main__':` (workers are spawned), or lower n_workers if memory "
            "ran out; rerun to resume"
        )
    raise MotionSessionError(
        f"{stage} failed for {len(failures)} of {total} recording(s): {detail} ({hint})"
    ) from next(iter(failures.values()))


def run_stage1(
    config: SessionConfig,
    of_options_override: Mapping[str, Any] | None = None,
    task_index: int | None = None,
    *,
    progress: bool | None = None,
    executor: SessionExecutor | None = None,
) -> list[Path]:
    """Motion-correct every recording of the session (stage 1), resuming completed ones.

    With ``task_index`` only that recording runs, here (pyflowreg's array-job form). With
    ``scheduler="array"`` only the array task's recording runs (:func:`run_stage1_array`).
    Otherwise all recordings run on ``executor`` (default: the scheduler's, a process pool of
    ``n_workers`` or a Dask cluster); a failing recording does not stop the others, and the
    failures are raised together at the end. Each recording skipped because its outputs are
    verified complete is logged as "already complete" (INFO), with a count at the end.

    Parameters
    ----------
    config
        The session configuration.
    of_options_override
        OFOptions values for every recording, over ``flow_options`` and over the session's
        ``flow_backend``, ``backend_params`` and ``stage1_quality_setting`` (pyflowreg's
        argument and order; the command line's ``--of-params``); a value that disagrees with
        one of those is logged as a warning. ``input_file`` and ``output_path`` are refused.
    task_index
        0-based index of the one recording to process, in sorted order (pyflowreg's; array
        task ids are 1-based: ``task_index = task_id - 1``).
    progress
        Bars on stderr: ``None`` (default) only when stderr is a terminal, ``True`` always,
        ``False`` never. One counts the recordings; with the local executor, one more per
        recording in progress counts its frames (updated after each buffer). With Dask or
        another executor only the recordings are counted.
    executor
        Where to run the tasks; closed here only if created here.

    Returns
    -------
    list of pathlib.Path
        The output folder of each recording processed, in sorted input order.

    Raises
    ------
    MotionSessionError
        Naming every recording that failed, or a ``task_index`` out of range.
    ConfigError
        If ``of_options_override`` holds an unknown key or a bad value.
    """
    if of_options_override:
        config = config.with_flow_overrides(dict(of_options_override))
    for message in config.stage1_disagreements():
        logger.warning("%s", message)
    if task_index is not None:
        files = discover_recordings(config)
        if not 0 <= task_index < len(files):
            raise MotionSessionError(
                f"task_index {task_index} is out of range: {len(files)} recording(s) match "
                f"{config.pattern!r} in {config.root} (0-based: 0 to {len(files) - 1})"
            )
        config.output_dir.mkdir(parents=True, exist_ok=True)
        result = compensate_one(config, files[task_index])
        _log_result(result, files[task_index])
        return [result["folder"]]
    if config.scheduler == "array" and executor is None:
        return [run_stage1_array(config)]
    files = discover_recordings(config)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    logger.info("stage 1: %d recording(s) in %s", len(files), config.root)
    own = executor is None
    executor = executor or make_executor(config)
    failures: dict[str, BaseException] = {}
    skipped = 0
    try:
        with Stage1Progress(files, executor, progress=progress) as bar:
            arguments = [(config, path, bar.reporter) for path in files]
            for index, result, error in executor.map_unordered(compensate_one, arguments):
                if error is not None:
                    logger.error("stage 1 failed for %s: %s", files[index].name, error)
                    failures[files[index].name] = error
                else:
                    skipped += _log_result(result, files[index])
                bar.recording_done(index)
    finally:
        if own:
            executor.close()
    if skipped:
        logger.info(
            "stage 1: %d of %d recording(s) already complete (skipped); resume=false redoes them",
            skipped,
            len(files),
        )
    _raise_failures("stage 1", failures, len(files))
    return [recording_dir(config, path) for path in files]


def _log_result(result: Mapping[str, Any], input_file: Path) -> bool:
    """Log one recording's outcome in this process; ``True`` when it was skipped."""
    if result["state"] == "skipped":
        logger.info("stage 1: %s already complete (verified); skipped", input_file.name)
        return True
    logger.info("stage 1: %s corrected in %.1f s", input_file.name, result["seconds"])
    return False


def get_array_task_id(environ: Mapping[str, str] | None = None) -> int | None:
    """The 1-based array task index from SLURM, SGE or PBS; ``None`` outside an array job.

    Reads ``SLURM_ARRAY_TASK_ID``, ``SGE_TASK_ID`` and ``PBS_ARRAY_INDEX`` in that order (SGE's
    ``"undefined"`` counts as unset), as pyflowreg's ``get_array_task_id``.

    Parameters
    ----------
    environ
        Mapping to read instead of ``os.environ``.

    Raises
    ------
    MotionSessionError
        If a variable is set to something other than a positive integer (the message shows
        what was found).
    """
    env = os.environ if environ is None else environ
    for name in ARRAY_TASK_VARIABLES:
        value = env.get(name)
        if value is None or not value.strip() or value.strip().lower() == "undefined":
            continue
        try:
            task = int(value)
        except ValueError:
            raise MotionSessionError(
                f"{name}={value!r} is not an integer array task index"
            ) from None
        if task < 1:
            raise MotionSessionError(
                f"{name}={task}: array task indices are 1-based; submit with --array=1-N"
            )
        return task
    return None


def _no_task_error(environ: Mapping[str, str] | None) -> MotionSessionError:
    env = os.environ if environ is None else environ
    found = {name: env.get(name) for name in ARRAY_TASK_VARIABLES}
    return MotionSessionError(
        f"no array task index: none of {', '.join(ARRAY_TASK_VARIABLES)} is set (found "
        f"{found}). run_stage1_array runs inside an array job (sbatch --array=1-N, qsub -t 1-N, "
        "qsub -J 1-N); outside one, use run_stage1 or scheduler='local'"
    )


def run_stage1_array(
    config: SessionConfig,
    of_options_override: Mapping[str, Any] | None = None,
    *,
    task_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Stage 1 for the one recording of this array task (sorted order, 1-based).

    Parameters
    ----------
    config
        The session configuration.
    of_options_override
        OFOptions values over ``flow_options``, as for :func:`run_stage1`.
    task_id
        The 1-based index; default :func:`get_array_task_id`.
    environ
        Environment to read the index from (default ``os.environ``).

    Returns
    -------
    pathlib.Path
        The recording's output folder.

    Raises
    ------
    MotionSessionError
        If no index is set or it is beyond the number of recordings.
    """
    if of_options_override:
        config = config.with_flow_overrides(dict(of_options_override))
    for message in config.stage1_disagreements():
        logger.warning("%s", message)
    files = discover_recordings(config)
    task = get_array_task_id(environ) if task_id is None else task_id
    if task is None:
        raise _no_task_error(environ)
    if not 1 <= task <= len(files):
        raise MotionSessionError(
            f"array task {task} is out of range: {len(files)} recording(s) match "
            f"{config.pattern!r} in {config.root}; submit the array as --array=1-{len(files)}"
        )
    input_file = files[task - 1]
    logger.info("array task %d of %d: %s", task, len(files), input_file.name)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    result = compensate_one(config, input_file)
    _log_result(result, input_file)
    return result["folder"]
