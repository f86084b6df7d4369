"""Executors are a registry: ``scheduler`` names one, and a user adds their own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, ClassVar

import h5py
import pytest

from labsession.errors import ConfigError
from labsession.motion.session import (
    DaskExecutor,
    LocalExecutor,
    SessionConfig,
    SessionExecutor,
    _executors,
    available_executors,
    make_executor,
    recording_dir,
    register_executor,
    run_stage1,
)

from .conftest import N_FRAMES, SHAPE, fast_config


class ThreadsExecutor(SessionExecutor):
    """Tasks on a thread pool, newest first; records what it ran and whether it was closed."""

    made: ClassVar[list[ThreadsExecutor]] = []

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers
        self.ran: list[Path] = []
        self.threads: set[str] = set()
        self.closed = False
        ThreadsExecutor.made.append(self)

    def map_unordered(
        self, fn: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        def task(args: tuple[Any, ...]) -> Any:
            self.threads.add(threading.current_thread().name)
            self.ran.append(Path(args[1]))
            return fn(*args)

        with ThreadPoolExecutor(self.n_workers, thread_name_prefix="threads-executor") as pool:
            futures = {pool.submit(task, arguments[i]): i for i in reversed(range(len(arguments)))}
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], None if error else future.result(), error

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The executor registry, restored after the test (registrations made in it vanish)."""
    copy = dict(_executors._REGISTRY)
    monkeypatch.setattr(_executors, "_REGISTRY", copy)
    ThreadsExecutor.made.clear()
    return copy


def test_builtin_executors_are_registered_in_order() -> None:
    assert available_executors()[:3] == ["local", "array", "dask"]


def test_builtin_names_build_the_builtin_executors(tmp_path: Path) -> None:
    config = SessionConfig(root=tmp_path, scheduler="local", n_workers=3)
    with make_executor(config) as executor:
        assert type(executor) is LocalExecutor
        assert executor.n_workers == 3
    with make_executor(config.model_copy(update={"scheduler": "array"})) as executor:
        assert type(executor) is LocalExecutor  # the re-projections of an array run: the pool
    assert issubclass(DaskExecutor, SessionExecutor)


def test_registered_executor_runs_stage_1(registry, fresh_copy: Path) -> None:
    register_executor("Threads", lambda config: ThreadsExecutor(config.effective_workers))
    assert "threads" in available_executors()
    config = fast_config(fresh_copy, scheduler=" THREADS ", n_workers=2)
    assert config.scheduler == "threads"  # names are case-insensitive, stored lower-case
    folders = run_stage1(config, progress=False)
    (executor,) = ThreadsExecutor.made
    assert executor.n_workers == 2
    recordings = sorted(fresh_copy.glob("*.tif"))
    assert sorted(executor.ran) == recordings  # every recording went through it
    assert executor.threads
    assert all(t.startswith("threads-executor") for t in executor.threads)
    assert executor.closed  # the stage closes what it made
    assert folders == [recording_dir(config, p) for p in recordings]
    for folder in folders:
        with h5py.File(folder / "compensated.hdf5", "r") as f:
            assert f["mov"].shape == (N_FRAMES, *SHAPE, 1)


def test_registered_executor_accepted_in_a_config_file(registry, tmp_path: Path) -> None:
    register_executor("threads", lambda config: ThreadsExecutor(1))
    (tmp_path / "data").mkdir()
    path = tmp_path / "session.toml"
    path.write_text('root = "data"\nscheduler = "threads"\n')
    config = SessionConfig.from_file(path)
    with make_executor(config) as executor:
        assert isinstance(executor, ThreadsExecutor)
    assert executor.closed


def test_unknown_scheduler_lists_the_registered_ones(registry, tmp_path: Path) -> None:
    register_executor("threads", lambda config: ThreadsExecutor(1))
    with pytest.raises(ConfigError, match="'local', 'array', 'dask' or 'threads'"):
        SessionConfig.from_mapping({"root": tmp_path, "scheduler": "ray"})


def test_executor_unregistered_after_validation_is_a_config_error(registry, tmp_path) -> None:
    register_executor("threads", lambda config: ThreadsExecutor(1))
    config = SessionConfig(root=tmp_path, scheduler="threads")
    del registry["threads"]
    with pytest.raises(ConfigError, match=r"unknown scheduler 'threads'.*register_executor"):
        make_executor(config)


def test_names_are_not_replaced_by_accident(registry) -> None:
    with pytest.raises(ValueError, match="'local' is already registered; pass overwrite=True"):
        register_executor("Local", lambda config: ThreadsExecutor(1))
    with pytest.raises(ValueError, match="empty"):
        register_executor("  ", lambda config: ThreadsExecutor(1))
    register_executor("local", lambda config: ThreadsExecutor(5), overwrite=True)
    assert isinstance(make_executor(SessionConfig(root=Path.cwd())), ThreadsExecutor)
