"""Where the bulk archive/restore chunks run: this process, a local pool it joins, or Dask.

:func:`run_chunks` maps a module-level chunk function over lists of runs and returns every
run's :class:`Outcome`. Chunk functions must be safe to run again on a chunk another process
left half done (they finish what it left, and count a run done already as done): the chunks a
lost worker held are run again. Three ways:

* one chunk or ``jobs=1``: in this process, one chunk after another;
* several chunks: ``jobs - 1`` worker processes **and this process**. This process runs the
  last chunks, one after another; the workers are handed the first ones, two each at a time
  (spawned workers only once one of them has started and run an empty chunk, so ``func([])``
  must return ``[]``). Start-up is hidden: while the workers fork (or, when this process runs
  other threads, spawn and import labsession, a few hundred ms) this process is already
  packing, and no chunk waits in a worker that is still starting; on a small root this process
  may do all the work before they are ready, and the pool is then left to exit on its own
  without being waited for (a spawned worker still starting then, or when the call fails,
  perhaps stuck in an import, is terminated: it holds nothing, and would keep the call or the
  interpreter from ending). Should the pool break (a worker killed: CPython then fails every
  chunk in flight and stops the other workers too), or a hand-over or a result be lost, the
  chunks concerned are run again here, once every worker has exited (never two processes on
  one chunk at once); those not yet handed over are done here too. Should this process die (a
  SIGKILL, the OOM killer), each worker finishes the chunk it is running, if any, and exits
  within a second (:func:`_watch_parent`): none is left waiting forever for work, holding the
  call's stdout and stderr open (a ``| tee`` or a job step that reads them would never end);
* a Dask ``distributed.Client``: each chunk is one task on the cluster's workers, which must
  see the same file system (a cluster's shared scratch). Dask runs a task again elsewhere when
  its worker is lost (up to its ``allowed-failures``); a task that fails for good fails its
  chunk's runs.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from dataclasses import dataclass
from typing import Any

__all__ = ["Outcome", "run_chunks"]

logger = logging.getLogger(__name__)

#: Most runs per chunk on a local pool (the unit a worker packs, flushes once, then removes).
LOCAL_CHUNK = 64
#: Most runs per Dask task: big enough that scheduling (~1 ms a task) stays negligible.
DASK_CHUNK = 256


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one run: ``source`` path, ``ok``, the ``error`` line, bytes in and out."""

    source: str
    ok: bool
    error: str = ""
    bytes_in: int = 0
    bytes_out: int = 0


#: How often (s) a worker process checks that the process that started it still lives.
PARENT_POLL = 0.2
#: Held by a worker process while it runs a chunk (see :func:`_watch_parent`).
_in_chunk = threading.Lock()


def _start_watch(parent: int) -> None:
    """Pool initializer: watch ``parent`` from a daemon thread of the new worker process."""
    threading.Thread(
        target=_watch_parent, args=(parent,), name="labsession-parent-watch", daemon=True
    ).start()


def _watch_parent(parent: int) -> None:
    """Exit this worker process once ``parent`` (the call that started it) is gone.

    The pool's queues cannot tell a worker that its parent died (the worker holds both ends of
    its own pipe, so it never reads an end of file): without this it would wait for work
    forever, holding the call's stdout and stderr open. A chunk in progress is finished first
    (chunks are safe to cut anywhere, but need not be); the next one is not started.
    """
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    _in_chunk.acquire()  # never released: this process ends here
    logger.warning("the bulk call's main process is gone; worker %d exits", os.getpid())
    os._exit(1)


def _in_worker(
    func: Callable[..., list[Outcome]], part: Sequence[Any], *extra: Any
) -> list[Outcome]:
    """Run ``func(part, *extra)`` in a worker process, marked busy (see :func:`_watch_parent`)."""
    with _in_chunk:
        return func(part, *extra)


def _pool_context() -> mp.context.BaseContext:
    # fork starts workers fastest, but is only safe while this process has a single thread.
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _split(items: list[Any], workers: int, cap: int) -> list[list[Any]]:
    size = max(1, min(cap, math.ceil(len(items) / (workers * 8))))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _failed(part: Sequence[Any], exc: BaseException) -> list[Outcome]:
    name = part[0][0] if isinstance(part[0], tuple) else part[0]
    logger.error("worker failed on the chunk starting at %s: %r", name, exc)
    return [Outcome(str(p[0] if isinstance(p, tuple) else p), False, error=repr(exc)) for p in part]


def run_chunks(
    func: Callable[..., list[Outcome]],
    items: list[Any],
    extra: tuple[Any, ...],
    *,
    jobs: int | None,
    client: Any | None,
    description: str,
    progress: bool | None,
) -> list[Outcome]:
    """Run ``func(chunk, *extra)`` over ``items`` split into chunks; return all the outcomes.

    Parameters
    ----------
    func
        Module-level chunk function (picklable by name), returning one outcome per item (none
        for an empty chunk).
    items
        Run paths, or ``(archive, dest)`` pairs.
    extra
        Further arguments, the same for every chunk.
    jobs
        Processes in all, this one included (default: the number of CPUs); ignored with
        ``client``.
    client
        A ``dask.distributed.Client``: chunks run as tasks on its workers instead.
    description, progress
        Progress bar label, and whether to show it (see :func:`make_progress`).
    """
    if not items:
        return []
    if progress is False:  # no bar: rich is not even imported (~70 ms of a short call)
        return _run(func, items, extra, jobs=jobs, client=client, advance=lambda n: None)
    from labsession.core.progress import make_progress

    with make_progress(unit="sessions", progress=progress) as bar:
        task = bar.add_task(description, total=len(items))
        return _run(
            func, items, extra, jobs=jobs, client=client, advance=lambda n: bar.advance(task, n)
        )


def _run(
    func: Callable[..., list[Outcome]],
    items: list[Any],
    extra: tuple[Any, ...],
    *,
    jobs: int | None,
    client: Any | None,
    advance: Callable[[int], None],
) -> list[Outcome]:
    if client is not None:
        return _run_dask(client, func, items, extra, advance)
    jobs = (os.cpu_count() or 1) if jobs is None else max(1, jobs)
    chunks = _split(items, jobs, LOCAL_CHUNK)
    if jobs == 1 or len(chunks) == 1:
        outcomes: list[Outcome] = []
        for part in chunks:
            outcomes += func(part, *extra)
            advance(len(part))
        return outcomes
    return _run_local(func, chunks, extra, jobs - 1, advance)


def _run_local(
    func: Callable[..., list[Outcome]],
    chunks: list[list[Any]],
    extra: tuple[Any, ...],
    workers: int,
    advance: Callable[[int], None],
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    workers = min(workers, len(chunks))
    context = _pool_context()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_watch,
        initargs=(os.getpid(),),
    )
    todo = deque(chunks)
    running: dict[Future[list[Outcome]], list[Any]] = {}
    lost: list[list[Any]] = []  # chunks a worker may have run in part: again here at the end
    handing = True  # False once the pool cannot take chunks: the rest is done here

    def collect(futures: Iterable[Future[list[Outcome]]]) -> None:
        nonlocal outcomes, handing
        for future in futures:
            part = running.pop(future)
            try:
                outcomes += future.result()
            except Exception as exc:  # noqa: BLE001 - the pool broke, or the result was lost
                logger.warning("worker processes lost a chunk, to be run here: %r", exc)
                lost.append(part)
                handing = False
                continue
            advance(len(part))

    probe: Future[list[Outcome]] | None = None
    try:
        # This process takes chunks from the end, the workers from the start, two each in hand
        # so that none idles while this process packs. A forked worker starts in ~10 ms and is
        # handed chunks at once; a spawned one takes 0.2-0.5 s to start and import ``func``'s
        # module, so it gets chunks only once it has run an empty one: none waits in a worker
        # still starting while this process could have done it.
        probe = (
            None
            if context.get_start_method() == "fork"
            else pool.submit(_in_worker, func, [], *extra)
        )
        while todo or running:
            collect([f for f in running if f.done()])
            if probe is not None and probe.done():
                error = probe.exception()
                if error is not None:
                    logger.warning("worker processes failed to start: %r", error)
                    handing = False
                probe = None
            while handing and probe is None and todo and len(running) < 2 * workers:
                part = todo.popleft()
                try:
                    running[pool.submit(_in_worker, func, part, *extra)] = part
                except BrokenExecutor as exc:  # refused before it was queued: done here
                    logger.warning("worker processes lost, finishing here: %r", exc)
                    todo.appendleft(part)
                    handing = False
                except Exception as exc:  # noqa: BLE001 - queued, perhaps: a worker may run it
                    logger.warning("could not hand a chunk to the workers: %r", exc)
                    lost.append(part)
                    handing = False
            if todo:
                part = todo.pop()
                outcomes += func(part, *extra)
                advance(len(part))
            elif running:
                collect(wait(running, return_when=FIRST_COMPLETED).done)
        if lost:
            pool.shutdown(wait=True, cancel_futures=True)  # no worker is left to hold one
            logger.warning("running here the %d chunk(s) the worker processes lost", len(lost))
            for part in lost:
                try:
                    outcomes += func(part, *extra)
                except Exception as exc:  # noqa: BLE001 - its runs fail, the others go on
                    outcomes += _failed(part, exc)
                advance(len(part))
    finally:
        if probe is not None and not probe.done():
            # No worker has started, so none holds a chunk: one stuck while starting (an import
            # that hangs) would keep the interpreter from exiting, or this call (on an error)
            # from returning.
            _stop_processes(pool)
        # Idle workers exit within milliseconds. Waiting for them matters: a pool still
        # shutting down when the interpreter exits races CPython's exit hook, which then
        # prints "Exception ignored ... Bad file descriptor" after the call (3.11).
        pool.shutdown(wait=True, cancel_futures=True)
    return outcomes


def _stop_processes(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes (killed if still there after a second)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # CPython's pool
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=1.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=5.0)
            if process.is_alive():  # stuck in the kernel (a hung network file system)
                logger.warning("worker process %s did not exit when killed", process.pid)


def _run_dask(
    client: Any,
    func: Callable[..., list[Outcome]],
    items: list[Any],
    extra: tuple[Any, ...],
    advance: Callable[[int], None],
) -> list[Outcome]:
    from distributed import as_completed as dask_completed

    threads = max(1, sum(client.nthreads().values()))
    chunks = _split(items, threads, DASK_CHUNK)
    futures = {client.submit(func, part, *extra, pure=False): part for part in chunks}
    outcomes: list[Outcome] = []
    for future in dask_completed(list(futures)):
        part = futures[future]
        try:
            outcomes += future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker fails its chunk only
            outcomes += _failed(part, exc)
        finally:
            future.release()
        advance(len(part))
    return outcomes
