"""Where bulk chunks run: this process and a pool of real worker processes it hands chunks to."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import _ExecutorManagerThread

import pytest

from labsession.runs._chunks import _run_local
from labsession.testing import wait_until

# Chunk functions live in a module of their own, written to a folder on sys.path: a spawned
# worker imports them by name (the test modules themselves are not importable there).
CHUNK_FUNCS = textwrap.dedent(
    """
    import multiprocessing, os, signal, time
    from pathlib import Path
    from labsession.runs._chunks import Outcome
    from labsession.testing import wait_until

    def in_worker():  # asked at each call: a forked worker inherits this module as imported
        return multiprocessing.parent_process() is not None

    if in_worker() and os.environ.get("CHUNK_TEST_START_DELAY"):
        time.sleep(float(os.environ["CHUNK_TEST_START_DELAY"]))  # a worker slow to start

    def ran_by():
        # the process running a chunk, and how many worker processes it has alive meanwhile
        return f"{os.getpid()}:{len(multiprocessing.active_children())}"

    def by_pid(part):
        # each item's outcome names the process that ran it
        return [Outcome(str(item), True, error=ran_by()) for item in part]

    def worker_started_or_wait(flag_dir):
        if in_worker():
            Path(flag_dir, "worker-ready").touch()  # started (an empty chunk first if spawned)
            return
        # this process waits until a worker is ready, then packs a chunk in 50 ms
        wait_until(Path(flag_dir, "worker-ready").exists, timeout=60, interval=0.01)
        time.sleep(0.05)

    def logged(part, flag_dir):
        worker_started_or_wait(flag_dir)
        for item in part:  # one mark per execution of an item, whichever process ran it
            with open(Path(flag_dir, "log", str(item)), "a") as f:
                f.write(ran_by() + " ")
        return by_pid(part)

    def fails_here(part):
        if not in_worker():
            raise RuntimeError("a chunk failed in the calling process")
        return by_pid(part)

    def dies_on_first_chunk(part, flag_dir):
        worker_started_or_wait(flag_dir)
        if in_worker() and 0 in part:
            Path(flag_dir, "killed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return by_pid(part)
    """
)


@pytest.fixture
def spawned_workers():
    """Another thread in this process: the pool spawns its workers instead of forking them."""
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
    yield
    stop.set()


@pytest.fixture
def chunk_funcs(tmp_path, monkeypatch):
    name = f"chunk_funcs_{os.getpid()}_{time.monotonic_ns()}"
    (tmp_path / f"{name}.py").write_text(CHUNK_FUNCS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    yield module
    # leave no worker behind (a slow one exits once started: the pool was shut down)
    assert wait_until(lambda: not multiprocessing.active_children(), timeout=60)


def _pid(ran_by):
    return int(ran_by.split(":")[0])


def _run(func, chunks, extra=()):
    advanced = []
    outcomes = _run_local(func, chunks, extra, 1, advanced.append)
    assert sum(advanced) == sum(len(c) for c in chunks)
    return outcomes


def test_no_chunk_waits_for_a_worker_still_starting(chunk_funcs, spawned_workers, monkeypatch):
    # The spawned worker takes 6 s to start here: this process does every chunk and returns
    # without waiting for it.
    monkeypatch.setenv("CHUNK_TEST_START_DELAY", "6")
    chunks = [list(range(i, i + 5)) for i in range(0, 40, 5)]
    t0 = time.monotonic()
    outcomes = _run(chunk_funcs.by_pid, chunks)
    elapsed = time.monotonic() - t0
    assert sorted(int(o.source) for o in outcomes) == list(range(40))
    assert {_pid(o.error) for o in outcomes} == {os.getpid()}
    assert elapsed < 4, elapsed


def test_a_call_returns_with_its_pool_gone(chunk_funcs, tmp_path):
    # A pool still shutting down when the interpreter exits races CPython's exit hook: a
    # script ending right after a bulk call printed "Exception ignored ... Bad file descriptor"
    # about one run in twenty. The call returns with its workers and pool thread gone.
    (tmp_path / "log").mkdir()
    chunks = [list(range(i, i + 5)) for i in range(0, 40, 5)]
    outcomes = _run(chunk_funcs.logged, chunks, (str(tmp_path),))  # waits for a worker here
    assert any(_pid(o.error) != os.getpid() for o in outcomes)  # a worker took chunks
    assert multiprocessing.active_children() == []
    assert not [t for t in threading.enumerate() if isinstance(t, _ExecutorManagerThread)]


def test_a_worker_stuck_while_starting_is_stopped_once_every_chunk_is_done(
    chunk_funcs, spawned_workers, monkeypatch
):
    # It would keep the interpreter from exiting (the pool's workers are joined at exit).
    monkeypatch.setenv("CHUNK_TEST_START_DELAY", "600")
    chunks = [list(range(i, i + 5)) for i in range(0, 20, 5)]
    outcomes = _run(chunk_funcs.by_pid, chunks)
    assert {_pid(o.error) for o in outcomes} == {os.getpid()}
    assert wait_until(lambda: not multiprocessing.active_children(), timeout=10)


def test_an_error_here_is_raised_at_once_while_a_worker_is_stuck_starting(
    chunk_funcs, spawned_workers, monkeypatch
):
    monkeypatch.setenv("CHUNK_TEST_START_DELAY", "600")
    chunks = [list(range(i, i + 5)) for i in range(0, 20, 5)]
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="failed in the calling process"):
        _run(chunk_funcs.fails_here, chunks)
    assert time.monotonic() - t0 < 30
    assert wait_until(lambda: not multiprocessing.active_children(), timeout=10)


def test_the_chunks_a_killed_worker_held_are_run_here_once_no_worker_is_left(chunk_funcs, tmp_path):
    # The worker takes the first chunks once it has started (this process meanwhile packs the
    # last ones, 50 ms each, ~1 s in all) and is SIGKILLed by chunk 0: that chunk and the one
    # queued behind it are run again here, after every worker has exited; none is lost.
    chunks = [list(range(i, i + 2)) for i in range(0, 40, 2)]
    outcomes = _run(chunk_funcs.dies_on_first_chunk, chunks, (str(tmp_path),))
    assert (tmp_path / "killed").exists(), "the worker never got chunk 0"
    assert sorted(int(o.source) for o in outcomes) == list(range(40))
    assert all(o.ok for o in outcomes)
    by_item = {int(o.source): o.error for o in outcomes}
    assert by_item[0] == by_item[1] == f"{os.getpid()}:0"  # here, no worker alive
    done_by_worker = {i for i, e in by_item.items() if _pid(e) != os.getpid()}
    assert not done_by_worker & {0, 1}


def test_a_chunk_whose_hand_over_failed_runs_here_only_once_no_worker_is_left(
    chunk_funcs, spawned_workers, tmp_path, monkeypatch
):
    # submit() queues a chunk, then starts a second worker; should that fail (fork's EAGAIN),
    # the chunk may still run in the first worker: it is run here too, but only once every
    # worker has exited (never two processes on it at once).
    calls = []
    adjust = ProcessPoolExecutor._adjust_process_count

    def adjust_or_fail(self):
        calls.append(1)
        if len(calls) == 3:  # the probe, chunk 0 (to the idle worker), chunk 1: a new worker
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return adjust(self)

    monkeypatch.setattr(ProcessPoolExecutor, "_adjust_process_count", adjust_or_fail)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    chunks = [list(range(i, i + 2)) for i in range(0, 40, 2)]
    outcomes = _run_local(chunk_funcs.logged, chunks, (str(tmp_path),), 2, lambda n: None)
    assert len(calls) >= 3, "no second worker was asked for: the failure was not injected"
    assert sorted(int(o.source) for o in outcomes) == list(range(40))
    assert all(o.ok for o in outcomes)
    assert wait_until(lambda: not multiprocessing.active_children(), timeout=60)
    runs = {int(f.name): f.read_text().split() for f in log_dir.iterdir()}
    assert set(runs) == set(range(40))
    twice = {k: v for k, v in runs.items() if len(v) > 1}
    assert set(twice) <= {2, 3}, twice  # chunk 1 only, whose hand-over raised
    assert runs[2][-1] == runs[3][-1] == f"{os.getpid()}:0"  # last, here, no worker alive


# The bulk call's main process stalls in its own first chunk (after the pool's workers were
# handed theirs) and says so: the test kills it there with SIGKILL.
STALL_IN_MAIN = textwrap.dedent(
    """
    import os, sys, time
    from labsession.runs import _bulk, archive_existing

    real, main = _bulk._archive_chunk, os.getpid()

    def chunk(paths, *args):
        if os.getpid() == main and paths:
            print("stalled", flush=True)
            time.sleep(600)
        return real(paths, *args)

    _bulk._archive_chunk = chunk
    archive_existing(sys.argv[1], dry_run=False, jobs=3, progress=False)
    """
)


@pytest.mark.slow
def test_workers_exit_when_the_bulk_call_is_killed_and_a_rerun_finishes(tmp_path):
    from labsession.runs import archive_existing

    root = tmp_path / "FINISHED_SUCCESS"
    runs = [root / f"2026Y-05M-17D-00h00m{i:02d}s_a1B2" for i in range(48)]
    for run in runs:
        (run / "logs").mkdir(parents=True)
        (run / "logs" / "stdout.log").write_text(f"{run.name}\n" * 10)
    proc = subprocess.Popen(
        [sys.executable, "-c", STALL_IN_MAIN, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline() == b"stalled\n"
        os.kill(proc.pid, signal.SIGKILL)  # the main process only, as the OOM killer would
        proc.wait(timeout=30)
        # Every process holding the call's stdout (its workers) has exited: end of file.
        deadline = time.monotonic() + 30
        ended = False
        while not ended and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            ended = bool(ready) and proc.stdout.read() == b""
        assert ended, "the killed call's workers are still alive, holding its stdout open"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
    summary = archive_existing(root, dry_run=False, jobs=1, progress=False)
    assert summary["failed"] == 0, summary["errors"]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == sorted(
        f"{run.name}.tar.gz" for run in runs
    )
