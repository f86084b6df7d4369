"""A queue of slow actions run in order on one thread, so the frame loop never waits on them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["TaskQueue"]

log = logging.getLogger(__name__)


class TaskQueue:
    """Run callables one after another on a worker thread (started on first use).

    Widgets hand every action that touches the disk, LSL or a subprocess to a queue (start or stop
    a recording, write a label, pack a session) and return to drawing at once. Actions run in the
    order submitted. A failure is logged and kept in :attr:`last_error` (and passed to
    ``on_error`` when given) so the widget can show it; it never reaches the frame loop.

    Parameters
    ----------
    name
        Name of the worker thread (``labsession-<name>``).
    """

    def __init__(self, name: str):
        self.name = name
        self.last_error: BaseException | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        on_error: Callable[[BaseException], None] | None = None,
        **kwargs: Any,
    ) -> Future[Any]:
        """Queue ``func(*args, **kwargs)``; returns its future."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"labsession-{self.name}")
            future = self._executor.submit(func, *args, **kwargs)
            self._pending.add(future)
        future.add_done_callback(lambda f: self._done(f, on_error))
        return future

    def _done(self, future: Future[Any], on_error: Callable[[BaseException], None] | None) -> None:
        with self._lock:
            self._pending.discard(future)
        exc = None if future.cancelled() else future.exception()
        if exc is None:
            return
        self.last_error = exc
        log.error("%s: %s: %s", self.name, type(exc).__name__, exc, exc_info=exc)
        if on_error is not None:
            on_error(exc)

    @property
    def busy(self) -> bool:
        """True while an action is queued or running."""
        with self._lock:
            return bool(self._pending)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every queued action; False if some still run after ``timeout`` seconds."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            try:
                future.exception(timeout)
            except TimeoutError:
                return False
        return True

    def shutdown(self, wait: bool = True) -> None:
        """Finish (``wait=True``) or drop the queued actions and stop the worker thread."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=not wait)
