"""The background writer: acquisition threads hand samples over, one thread writes them to Zarr.

``append`` copies the samples into a per-stream queue and returns; the writer thread writes whole
one-second chunks (aligned to the Zarr chunk grid, so no chunk is rewritten), and anything older
than ``max_latency`` seconds even if the chunk is not full, so a crash loses at most about a
second. The lock is held only to swap queues, never during disk I/O. When a stream's queue holds
``buffer_seconds`` of data, ``append`` blocks until the writer catches up (with a warning): samples
are never dropped.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import zarr

from labsession.errors import SessionError
from labsession.recording._records import StreamInfo

__all__ = ["SessionWriter"]

log = logging.getLogger(__name__)

_LIVE_WRITERS: weakref.WeakSet[SessionWriter] = weakref.WeakSet()


def _close_live_writers() -> None:
    """At interpreter exit, write what unclosed sessions still hold in memory."""
    for writer in list(_LIVE_WRITERS):
        try:
            writer.close()
        except Exception:  # already logged by the writer; exit goes on
            log.exception("could not finish writing %s at exit", writer._name)


# Runs before concurrent.futures shuts its executors down (zarr's I/O needs them), which plain
# ``atexit`` handlers do not; fall back to ``atexit`` should the private hook ever disappear.
getattr(threading, "_register_atexit", atexit.register)(_close_live_writers)


@dataclass
class _Queue:
    """Samples of one stream appended but not yet written."""

    info: StreamInfo
    data_array: zarr.Array
    ts_array: zarr.Array
    limit: int
    blocks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    n_queued: int = 0
    n_written: int = 0
    oldest: float = 0.0  # monotonic time the oldest queued block arrived
    in_flight: int = 0  # samples taken by the writer and being written now

    @property
    def n_appended(self) -> int:
        return self.n_written + self.in_flight + self.n_queued


class SessionWriter:
    """Owns the writer thread of one session. Thread-safe.

    Parameters
    ----------
    name
        Used in the thread name and messages (the session folder).
    buffer_seconds
        Per-stream queue limit before ``append`` blocks.
    max_latency
        Longest time (s) a sample waits in memory before it is written.
    """

    def __init__(self, name: str, *, buffer_seconds: float = 30.0, max_latency: float = 1.0):
        self._name = name
        self._buffer_seconds = buffer_seconds
        self._max_latency = max_latency
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._flush_waiters = 0
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"labsession-writer-{name}", daemon=True
        )
        self._thread.start()
        _LIVE_WRITERS.add(self)

    # -- producer side -------------------------------------------------------------------------
    def add_stream(
        self,
        stream: str,
        info: StreamInfo,
        data_array: zarr.Array,
        ts_array: zarr.Array,
        *,
        n_written: int = 0,
    ) -> None:
        """Register a stream whose arrays already hold ``n_written`` samples."""
        limit = max(int(self._buffer_seconds * info.fs), 2 * info.chunk_samples)
        with self._cond:
            self._queues[stream] = _Queue(info, data_array, ts_array, limit, n_written=n_written)

    def append(self, stream: str, data: np.ndarray, ts: np.ndarray) -> None:
        """Queue validated, owned copies of samples; block only while the queue is full."""
        n = data.shape[0]
        with self._cond:
            self._raise_if_failed()
            queue = self._queues[stream]
            if queue.n_queued and queue.n_queued + n > queue.limit:
                log.warning(
                    "%s: stream %r has %.1f s of data waiting for the disk; append blocks until "
                    "the writer catches up (no sample is dropped)",
                    self._name,
                    stream,
                    queue.n_queued / queue.info.fs,
                )
                while queue.n_queued and queue.n_queued + n > queue.limit:
                    self._cond.wait(0.5)
                    self._raise_if_failed()
            first = not queue.blocks
            if first:
                queue.oldest = time.monotonic()
            queue.blocks.append((data, ts))
            queue.n_queued += n
            # Wake the writer for a full chunk, or to start the latency clock of a new block.
            if first or queue.n_queued >= queue.info.chunk_samples:
                self._cond.notify_all()

    def n_appended(self, stream: str) -> int:
        """Samples appended to ``stream`` so far (written or queued)."""
        with self._cond:
            return self._queues[stream].n_appended

    def flush(self) -> None:
        """Return once every sample appended before the call is written."""
        with self._cond:
            targets = {name: q.n_appended for name, q in self._queues.items()}
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while self._error is None and any(
                    self._queues[name].n_written < n for name, n in targets.items()
                ):
                    self._cond.wait(0.5)
            finally:
                self._flush_waiters -= 1
            self._raise_if_failed()

    def close(self) -> None:
        """Write everything queued and stop the thread (idempotent)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        _LIVE_WRITERS.discard(self)
        with self._cond:
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise SessionError(
                f"{self._name}: writing to disk failed ({self._error!r}); samples appended since "
                f"the last successful write are not on disk"
            ) from self._error

    # -- writer thread -------------------------------------------------------------------------
    def _take(
        self, queue: _Queue, now: float, everything: bool
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Under the lock: remove and return the samples to write now, or None."""
        if not queue.n_queued:
            return None
        chunk = queue.info.chunk_samples
        if everything or now - queue.oldest >= self._max_latency:
            n_take = queue.n_queued
        else:
            # Whole chunks only, ending on the chunk grid, so no chunk is written twice.
            end = (queue.n_written + queue.n_queued) // chunk * chunk
            n_take = end - queue.n_written
            if n_take <= 0:
                return None
        data_parts, ts_parts, taken = [], [], 0
        while taken < n_take:
            data, ts = queue.blocks[0]
            need = n_take - taken
            if data.shape[0] <= need:
                queue.blocks.pop(0)
            else:
                queue.blocks[0] = (data[need:], ts[need:])
                data, ts = data[:need], ts[:need]
            data_parts.append(data)
            ts_parts.append(ts)
            taken += data.shape[0]
        queue.n_queued -= n_take
        queue.in_flight = n_take
        if queue.blocks:
            queue.oldest = now
        one = len(data_parts) == 1
        return (
            data_parts[0] if one else np.concatenate(data_parts),
            ts_parts[0] if one else np.concatenate(ts_parts),
        )

    def _next_batch(self) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], bool]:
        with self._cond:
            while True:
                now = time.monotonic()
                everything = self._closing or self._flush_waiters > 0
                batch = {}
                for name, queue in self._queues.items():
                    taken = self._take(queue, now, everything)
                    if taken is not None:
                        batch[name] = taken
                if batch or self._closing:
                    return batch, self._closing and not batch
                waits = [
                    self._max_latency - (now - q.oldest)
                    for q in self._queues.values()
                    if q.n_queued
                ]
                self._cond.wait(max(0.01, min(waits)) if waits else None)

    def _run(self) -> None:
        while True:
            batch, done = self._next_batch()
            if done:
                return
            try:
                for name, (data, ts) in batch.items():
                    queue = self._queues[name]
                    start, stop = queue.n_written, queue.n_written + data.shape[0]
                    # Samples first, timestamps second: after a crash between the two, the
                    # shorter timestamp array (or its NaN fill) marks where valid data ends.
                    queue.data_array.resize((stop, queue.info.n_channels))
                    queue.data_array[start:stop] = data
                    queue.ts_array.resize((stop,))
                    queue.ts_array[start:stop] = ts
                    with self._cond:
                        queue.n_written = stop
                        queue.in_flight = 0
                        self._cond.notify_all()
            except BaseException as exc:
                log.exception("%s: writer failed", self._name)
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
