"""Stage 1's progress display: the recordings done, and the frames of each one in progress.

One rich task counts recordings (``stage 1: motion correction 1/3 recordings``); below it, one
task per recording being corrected counts its frames (``rec02.tif 480/1000 frames``), removed
when that recording is done. Frames reach the display through a *reporter*, the callable
``report(key, done, total)`` that :func:`~labsession.motion.session.compensate_one` calls after
each buffer:

- in-process runs (one worker, or one recording) call the display directly;
- a local process pool sends ``(key, done, total)`` through a ``multiprocessing`` manager queue
  that a thread of this process reads;
- Dask and other executors get no reporter: their workers may run on other machines, so the
  display counts recordings only (Dask's dashboard shows the tasks); HPC array tasks write
  their progress to each recording's ``session.log``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.managers import SyncManager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rich.progress import Progress, TaskID

from labsession.core.progress import make_progress, progress_enabled
from labsession.motion.session._executors import (
    LocalExecutor,
    SessionExecutor,
    exit_with_parent,
)

__all__ = ["FrameReporter", "Stage1Progress"]

logger = logging.getLogger(__name__)

#: ``report(key, done, total)``: ``done`` of ``total`` frames of recording ``key`` registered.
FrameReporter = Callable[[str, int, int], None]


@dataclass(frozen=True)
class _QueueReporter:
    """A picklable reporter for worker processes: puts each report on a manager queue."""

    queue: Any  # a multiprocessing manager's Queue proxy

    def __call__(self, key: str, done: int, total: int) -> None:
        try:
            self.queue.put_nowait((key, done, total))
        except Exception as exc:  # noqa: BLE001 - progress must never fail a recording
            logger.debug("frame progress lost: %r", exc)


class Stage1Progress:
    """The stage-1 display; a context manager around a rich :class:`~rich.progress.Progress`.

    Parameters
    ----------
    files
        The recordings, in the order the executor's task indices refer to.
    executor
        Where the recordings run; decides how frames are reported (see the module).
    progress
        ``True``: show; ``False``: do not; ``None``: only when stderr is a terminal.

    Attributes
    ----------
    reporter
        What to pass to each task (``None``: frames are not reported, recordings only).
    mode
        ``"inline"``, ``"queue"`` or ``"recordings"`` (no frames: Dask, other executors, or
        no bar shown).
    frames_seen
        The most frames reported per recording (``str(path)`` -> frames), kept after it is done.
    """

    def __init__(
        self, files: list[Path], executor: SessionExecutor, *, progress: bool | None
    ) -> None:
        self._files = files
        self._shown = progress_enabled(progress)
        self._bar: Progress = make_progress(unit="recordings", progress=self._shown)
        self._recordings: TaskID | None = None
        self._frames: dict[str, TaskID] = {}
        self._finished: set[str] = set()
        self._lock = threading.Lock()
        self._manager: Any = None
        self._reader: threading.Thread | None = None
        self._queue: Any = None
        self.reporter: FrameReporter | None = None
        self.frames_seen: dict[str, int] = {}
        self.mode = self._mode(executor, len(files)) if self._shown else "recordings"

    @staticmethod
    def _mode(executor: SessionExecutor, n_tasks: int) -> str:
        if type(executor) is not LocalExecutor:
            return "recordings"
        return "inline" if min(executor.n_workers, n_tasks) <= 1 else "queue"

    def __enter__(self) -> Self:
        self._bar.__enter__()
        self._recordings = self._bar.add_task("stage 1: motion correction", total=len(self._files))
        if self.mode == "inline":
            self.reporter = self.report
        elif self.mode == "queue":
            try:
                # as Manager(), but the server ends with this process (a killed run)
                self._manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
                self._manager.start(exit_with_parent, (os.getpid(),))
                self._queue = self._manager.Queue()
            except (OSError, EOFError, RuntimeError) as exc:  # e.g. no /dev/shm, no sockets
                logger.warning("stage 1 counts recordings only: no frame queue (%s)", exc)
                self.mode = "recordings"
                return self
            self.reporter = _QueueReporter(self._queue)
            self._reader = threading.Thread(target=self._read, name="stage1-frames", daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        while True:
            try:
                item = self._queue.get()
            except (EOFError, OSError):  # the manager went away
                return
            if item is None:
                return
            self.report(*item)

    def report(self, key: str, done: int, total: int) -> None:
        """Show ``done`` of ``total`` frames of recording ``key`` (a reporter itself)."""
        with self._lock:
            self.frames_seen[key] = max(done, self.frames_seen.get(key, 0))
            if key in self._finished:
                return  # a late report of a recording already counted as done
            task = self._frames.get(key)
            if task is None:
                task = self._bar.add_task(f"  {Path(key).name}", total=total, unit="frames")
                self._frames[key] = task
                self._bar.update(task, completed=done)
                self._bar.refresh()  # show the new line now, not at the next tick
            else:
                self._bar.update(task, completed=done, total=total)

    def recording_done(self, index: int) -> None:
        """Count recording ``index`` (of ``files``) as finished and drop its frames line."""
        key = str(self._files[index])
        with self._lock:
            self._finished.add(key)
            task = self._frames.pop(key, None)
            if task is not None:
                self._bar.remove_task(task)
            if self._recordings is not None:
                self._bar.advance(self._recordings, 1)
            self._bar.refresh()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._reader is not None:
                try:
                    self._queue.put(None)  # after every report the workers sent
                except (OSError, EOFError) as error:
                    logger.debug("frame queue already closed: %r", error)
                self._reader.join(timeout=10)
        finally:
            if self._manager is not None:
                self._manager.shutdown()
            self._bar.__exit__(exc_type, exc, tb)
