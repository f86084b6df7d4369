"""Say so when numba compiles the motion kernels (a cold cache: the first run on a machine).

The ``flowreg`` kernels are compiled with ``cache=True``: the first call on a machine (or after
the kernels' source changed) compiles them, which takes seconds to tens of seconds, and later
processes load the machine code from numba's cache in well under a second. While a call runs
inside :func:`announce_compilation`, numba's ``numba:compile`` event, which numba fires only when
it really compiles (after a cache miss, never for a cache load), makes this module log one
WARNING through the ``labsession`` logger, so the command line shows it at default verbosity
before the long silent wait, and one INFO line per kernel with the time it took.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from numba.core import event

__all__ = ["COMPILE_SECONDS", "announce_compilation"]

logger = logging.getLogger(__name__)

#: Typical cold compile of the ``flowreg`` kernels (s), as measured on a busy 2-core machine
#: by ``benchmarks/motion_cold_start.py``; quoted in the message, not used to decide anything.
COMPILE_SECONDS = 25

_MODULES = (
    "labsession.motion._flowreg_batch",
    "labsession.motion._flowreg_kernels",
    "labsession.motion._image_kernels",
    "labsession.motion._sor_kernels",
)

_lock = threading.Lock()
_announced = False


class _CompileListener(event.Listener):
    """Logs when the first of the motion kernels starts compiling and when that compile ends.

    numba compiles under its global compiler lock, so events come one compile at a time;
    the kernels a compile calls are compiled inside it (nested events, counted by ``depth``).
    """

    def __init__(self) -> None:
        self.depth = 0
        self.started: float | None = None

    @staticmethod
    def _ours(ev: event.Event) -> bool:
        dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "")
        return module in _MODULES

    def on_start(self, ev: event.Event) -> None:
        global _announced
        if not self._ours(ev):
            return
        self.depth += 1
        if self.depth > 1:
            return
        self.started = time.perf_counter()
        with _lock:
            first, _announced = not _announced, True
        if first:
            logger.warning(
                "compiling the flow kernels (first run only, about %d s)", COMPILE_SECONDS
            )

    def on_end(self, ev: event.Event) -> None:
        if not self._ours(ev):
            return
        self.depth -= 1
        if self.depth == 0 and self.started is not None:
            name = ev.data["dispatcher"].py_func.__name__
            logger.info(
                "compiled flow kernel %s in %.1f s", name, time.perf_counter() - self.started
            )
            self.started = None


@contextlib.contextmanager
def announce_compilation() -> Iterator[None]:
    """Log a WARNING if numba compiles a motion kernel while the block runs (once per process).

    Wrap a call of the kernels in it; a call that loads them from the cache logs nothing.
    """
    with event.install_listener("numba:compile", _CompileListener()):
        yield
