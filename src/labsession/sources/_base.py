"""The source interface: what a device, a generator or a replay must offer to be recorded.

A source is polled by one acquisition thread::

    info = source.connect()  # once; StreamInfo(n_channels, fs, dtype, channel_names)
    while running:
        chunk = source.read()  # (data (n, n_channels), ts (n,)) or None
    source.close()

``read`` returns every sample that arrived since the previous call, in order, each exactly once,
with its timestamp on the LSL clock (``labsession.core.clock.local_clock``); it may wait a short
while (at most ``poll_interval`` seconds) for data and returns ``None`` when nothing came.
``data`` is sample-major in the stream's dtype. To add your own device, subclass :class:`Source`
(three methods) and, to use it by name from the CLI, call :func:`register_source`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np

from labsession.recording import StreamInfo

__all__ = ["Chunk", "Source", "register_source", "source_factories"]

#: One read: ``(data (n_samples, n_channels), timestamps (n_samples,))``.
Chunk = tuple[np.ndarray, np.ndarray]


class Source(abc.ABC):
    """Base class of every source (synthetic, LSL, replay, your device).

    Attributes
    ----------
    poll_interval
        Longest time (s) :meth:`read` may wait for data before returning ``None``.
    """

    poll_interval: float = 0.01

    @abc.abstractmethod
    def connect(self) -> StreamInfo:
        """Open the device or stream and return its :class:`StreamInfo`."""

    @abc.abstractmethod
    def read(self) -> Chunk | None:
        """Return the samples that arrived since the last call, or ``None`` if none did."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the device (idempotent)."""

    def interrupt(self) -> None:  # noqa: B027 - optional hook, nothing to interrupt by default
        """Ask a :meth:`connect` waiting on another thread to give up soon (raising); called
        from any thread, before :meth:`close`. A source whose ``connect`` can wait long (for a
        device to appear) implements it, so that stopping does not wait for that."""

    def __enter__(self) -> Source:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_FACTORIES: dict[str, Callable[..., Source]] = {}


def register_source(name: str, factory: Callable[..., Source]) -> None:
    """Make ``factory`` available by ``name`` (e.g. to ``labsession record --source NAME``)."""
    if not name.isidentifier():
        raise ValueError(f"source name {name!r} must be an identifier")
    _FACTORIES[name] = factory


def source_factories() -> dict[str, Callable[..., Source]]:
    """The registered source factories by name (a copy)."""
    return dict(_FACTORIES)
