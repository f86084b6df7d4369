"""Where the per-recording tasks run: in-process, a local process pool, a Dask cluster, or yours.

An executor maps a module-level function over argument tuples and yields each task's outcome
as it finishes (``(index, result, error)``), so one failing recording does not stop the others
and the caller reports every failure at the end. ``scheduler = "array"`` runs one stage-1 task
per process (:func:`~labsession.motion.session.run_stage1_array`); its stage-3 re-projections
use the local pool.

``SessionConfig.scheduler`` names an executor in a registry, as ``flow_backend`` names a flow
backend: built in are ``local``, ``array`` and ``dask``; :func:`register_executor` adds one
(a Ray or HTCondor pool, a thread pool for I/O-bound work) without editing labsession::

    register_executor("threads", lambda config: MyThreadExecutor(config.effective_workers))
    SessionConfig(root="data", scheduler="threads")
"""

from __future__ import annotations

import abc
import importlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from types import TracebackType
from typing import Any, Self

from labsession.errors import ConfigError
from labsession.motion.session._config import DaskClusterSpec, SessionConfig

__all__ = [
    "DaskExecutor",
    "ExecutorFactory",
    "LocalExecutor",
    "SessionExecutor",
    "available_executors",
    "exit_with_parent",
    "make_executor",
    "register_executor",
]

logger = logging.getLogger(__name__)

Outcome = tuple[int, Any, BaseException | None]


class SessionExecutor(abc.ABC):
    """Runs ``fn(*args)`` for each argument tuple; a context manager that frees its workers."""

    @abc.abstractmethod
    def map_unordered(
        self, fn: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> Iterator[Outcome]:
        """Yield ``(index, result, None)`` or ``(index, None, error)`` as tasks finish."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers (no-op by default)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: How often (s) a pool worker checks that the process that started it still lives.
PARENT_POLL = 0.5


def exit_with_parent(parent: int) -> None:
    """Process initializer: end this process as soon as ``parent`` (which started it) is gone.

    A worker of a killed run (SIGKILL, the OOM killer, a lost SSH session) otherwise lives on:
    it finishes the recordings queued to it, writing their outputs while a resumed run
    rewrites them, then waits for work forever, holding the run's stdout and stderr open. Its
    task is cut short instead, as a kill of the whole run would: the resumed run removes what
    it left half written and redoes it.
    """
    threading.Thread(
        target=_watch_parent, args=(parent,), name="labsession-parent-watch", daemon=True
    ).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


class LocalExecutor(SessionExecutor):
    """A pool of ``n_workers`` processes (``spawn``); one worker or one task runs in-process.

    Should this process die, its workers exit within a second (:func:`exit_with_parent`).

    Parameters
    ----------
    n_workers
        Processes at most; the pool never starts more than there are tasks.
    """

    def __init__(self, n_workers: int = 1) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.n_workers = n_workers

    def map_unordered(
        self, fn: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> Iterator[Outcome]:
        workers = min(self.n_workers, len(arguments))
        if workers <= 1:
            for index, args in enumerate(arguments):
                try:
                    yield index, fn(*args), None
                except Exception as exc:  # noqa: BLE001 - reported per task by the caller
                    yield index, None, exc
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = {pool.submit(fn, *args): index for index, args in enumerate(arguments)}
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], None if error else future.result(), error


class DaskExecutor(SessionExecutor):
    """Tasks on a Dask distributed cluster: a running scheduler, or one started here.

    Parameters
    ----------
    address
        Scheduler address (``"tcp://host:8786"``); when given, nothing is started or stopped.
    cluster
        Cluster to start otherwise (any class with ``scheduler_address``, e.g. dask-jobqueue's
        ``SLURMCluster``); ``None`` starts ``LocalCluster(n_workers, threads_per_worker=1,
        processes=True)``. It is closed with the executor.
    n_workers
        Size of the default LocalCluster.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        cluster: DaskClusterSpec | None = None,
        n_workers: int = 1,
    ) -> None:
        from distributed import Client

        self._cluster = None
        if address is None:
            spec = cluster or DaskClusterSpec()
            module, _, name = spec.cls.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ImportError(
                    f"dask_cluster.class {spec.cls!r} cannot be imported ({exc}); install it "
                    "(e.g. pip install dask-jobqueue) or fix the name"
                ) from exc
            kwargs = dict(spec.kwargs)
            if spec.cls == "distributed.LocalCluster":
                kwargs = {
                    "n_workers": n_workers,
                    "threads_per_worker": 1,
                    "processes": True,
                    # a free port: the default 8787 may be taken (a warning) by another cluster
                    "dashboard_address": "127.0.0.1:0",
                    **kwargs,
                }
            self._cluster = cls(**kwargs)
            if spec.scale is not None:
                self._cluster.scale(spec.scale)
            address = self._cluster.scheduler_address
        logger.info("using the Dask scheduler at %s", address)
        self.address = address
        try:
            self.client = Client(address, set_as_default=False)
        except BaseException:
            if self._cluster is not None:
                self._cluster.close()
            raise

    def map_unordered(
        self, fn: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> Iterator[Outcome]:
        from distributed import as_completed as dask_completed

        futures = {
            self.client.submit(fn, *args, pure=False): index for index, args in enumerate(arguments)
        }
        for future in dask_completed(list(futures), loop=self.client.loop):
            try:
                yield futures[future], future.result(), None
            except Exception as exc:  # noqa: BLE001 - reported per task by the caller
                yield futures[future], None, exc
            finally:
                future.release()

    def close(self) -> None:
        """Close the client and the cluster started here (a given ``address`` is left running)."""
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


#: Builds the executor of a session from its configuration (``n_workers``, Dask settings...).
ExecutorFactory = Callable[[SessionConfig], SessionExecutor]
_REGISTRY: dict[str, ExecutorFactory] = {}


def register_executor(name: str, factory: ExecutorFactory, *, overwrite: bool = False) -> None:
    """Make ``factory(config) -> SessionExecutor`` available as ``scheduler = name``.

    The executor runs stage 1's recordings and stage 3's re-projections; it is closed by the stage
    that made it. Tasks are module-level functions with picklable arguments, so an executor may
    run them in other processes or on other machines.

    Parameters
    ----------
    name
        Scheduler name (case-insensitive, stored lower-case).
    factory
        Called with the :class:`SessionConfig` each time a stage needs workers.
    overwrite
        Replace an executor already registered under ``name``.

    Raises
    ------
    ValueError
        If ``name`` is blank, or taken and ``overwrite`` is false.
    """
    key = name.strip().lower()
    if not key:
        raise ValueError("executor name is empty; give a name such as 'threads'")
    if key in _REGISTRY and not overwrite:
        raise ValueError(
            f"executor {key!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[key] = factory


def available_executors() -> list[str]:
    """Names ``SessionConfig.scheduler`` accepts: the built-in ones, then those registered."""
    return list(_REGISTRY)


def make_executor(config: SessionConfig) -> SessionExecutor:
    """The executor ``config.scheduler`` names (``array`` -> the local pool).

    Raises
    ------
    ConfigError
        If no executor of that name is registered (it was unregistered after the config
        was validated, or the config was built without validation).
    """
    factory = _REGISTRY.get(config.scheduler)
    if factory is None:
        raise ConfigError(
            f"unknown scheduler {config.scheduler!r}; registered executors: "
            f"{available_executors()} (add one with labsession.motion.session.register_executor)"
        )
    return factory(config)


def _local(config: SessionConfig) -> SessionExecutor:
    return LocalExecutor(config.effective_workers)


def _dask(config: SessionConfig) -> SessionExecutor:
    return DaskExecutor(
        address=config.dask_address,
        cluster=config.dask_cluster,
        n_workers=config.effective_workers,
    )


register_executor("local", _local)
register_executor("array", _local)  # stage 1 runs per array task; later stages use the pool
register_executor("dask", _dask)
