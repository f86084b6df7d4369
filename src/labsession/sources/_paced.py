"""Sources that make their samples on demand, paced by the LSL clock (no drift).

:class:`PacedSource` holds the clock both generators share: sample ``k`` is due at
``t0 + k / fs`` (``t0``: :meth:`~PacedSource.connect`), and each :meth:`~PacedSource.read`
returns exactly the samples due since the previous one, with those timestamps. A subclass
says what the samples are (:meth:`~PacedSource.make`) and, if it keeps state that must change
with the samples handed out, what to note when they are claimed
(:meth:`~PacedSource.claimed`).
"""

from __future__ import annotations

import abc
import threading
import time
from typing import Any

import numpy as np

from labsession.core.clock import local_clock
from labsession.recording import StreamInfo
from labsession.sources._base import Chunk, Source

__all__ = ["PacedSource"]


class PacedSource(Source):
    """A source whose sample ``k`` is due at ``t0 + k / fs`` on the LSL clock.

    Subclasses set :attr:`info` in ``__init__`` (after calling this ``__init__``) and
    implement :meth:`make`.
    """

    info: StreamInfo

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._t0: float | None = None
        self._emitted = 0

    def connect(self) -> StreamInfo:
        """Start the clock at sample 0: samples are due from now on."""
        with self._lock:
            self._t0, self._emitted = local_clock(), 0
            self.started()
        return self.info

    def started(self) -> None:
        """Called by :meth:`connect` under the lock, once the clock is at sample 0."""

    def claimed(self, start: int, n: int) -> Any:
        """Called under the lock when samples ``[start, start + n)`` are handed out; what it
        returns is passed to :meth:`make` (default None)."""
        return None

    @abc.abstractmethod
    def make(self, start: int, n: int, state: Any) -> np.ndarray:
        """Samples ``[start, start + n)`` of the stream: ``(n, n_channels)``."""

    def read(self) -> Chunk | None:
        """Return the samples due since the last call (waits up to ``poll_interval`` for one)."""
        t0 = self._t0
        if t0 is None:
            raise RuntimeError(f"{type(self).__name__}.read() before connect()")
        deadline = time.monotonic() + self.poll_interval
        while True:
            with self._lock:
                due = int((local_clock() - t0) * self.info.fs) - self._emitted
                if due > 0:
                    start, self._emitted = self._emitted, self._emitted + due
                    state = self.claimed(start, due)
                    break
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.002, self.poll_interval))
        return self.make(start, due, state), t0 + np.arange(start, start + due) / self.info.fs

    def close(self) -> None:
        """Stop the clock (``read`` raises until the next ``connect``)."""
        self._t0 = None
