"""The background writer: acquisition threads hand samples over, one thread writes them to Zarr.

``append`` copies the samples into a per-stream queue and returns; the writer thread writes whole
one-second chunks (aligned to the Zarr chunk grid, so no chunk is rewritten), and anything older
than ``max_latency`` seconds even if the chunk is not full, so a crash loses at most about a
second. The lock is held only to swap queues, never during disk I/O. When a stream's queue holds
``buffer_seconds`` of data, ``append`` blocks until the writer catches up (with a warning): samples
are never dropped while the disk takes them.

When a write fails (a full disk, a removed drive), the writer stops for good: the arrays are cut
back to the samples written before the failed batch (so they never hold a hole or a half-written
chunk), every sample still queued is counted as lost, and from then on ``append`` counts the
samples it is given as lost and raises :class:`SessionError` at once, never blocking its caller.
:meth:`SessionWriter.lost` reports how many samples of each stream were lost, and their time span.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from labsession.errors import SessionError
from labsession.recording._records import StreamInfo

__all__ = ["LostSamples", "SessionWriter", "atomic_chunk_writes", "describe_error"]

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


#: The codec pipeline of the arrays a session writes. Its chunk writes are atomic (temporary file,
#: then rename); the faster ``zarrs`` pipeline writes chunk files in place, so a full disk or a
#: kill mid-write leaves truncated chunks, even of samples written before (a partial chunk is
#: rewritten as it fills). Readers keep ``zarrs``.
_WRITE_PIPELINE = "zarr.core.codec_pipeline.BatchedCodecPipeline"


#: Longest time (s) between two calls of ``after_batch`` while no samples come (disconnects).
IDLE_HOUSEKEEPING_S = 1.0


@contextlib.contextmanager
def atomic_chunk_writes() -> Iterator[None]:
    """Arrays created or opened inside write each chunk atomically (see ``_WRITE_PIPELINE``),
    and write every chunk, also one that is all fill value (which Zarr leaves out by default):
    a sample chunk missing from an array marked so is then damage, not zeros."""
    with zarr.config.set(
        {"codec_pipeline.path": _WRITE_PIPELINE, "array.write_empty_chunks": True}
    ):
        yield


def describe_error(exc: BaseException) -> str:
    """The cause of a failed write in a user's words: ``"No space left on device"``, ...

    ``OSError`` gives its ``strerror`` (and the file); other errors (the ``zarrs`` pipeline
    reports a full disk as ``RuntimeError("No space left on device (os error 28)")``) give
    ``"TypeName: message"``.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


@dataclass
class LostSamples:
    """Samples of one stream that never reached the disk (counted by the writer).

    Attributes
    ----------
    n_samples
        How many.
    first_timestamp, last_timestamp
        The earliest and latest of their timestamps (s, the stream's clock).
    """

    n_samples: int = 0
    first_timestamp: float = float("inf")
    last_timestamp: float = float("-inf")

    def add(self, ts: np.ndarray) -> None:
        """Count the samples with timestamps ``ts (n,)``."""
        if ts.shape[0]:
            self.n_samples += int(ts.shape[0])
            self.first_timestamp = min(self.first_timestamp, float(ts.min()))
            self.last_timestamp = max(self.last_timestamp, float(ts.max()))

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready: ``{"n_samples", "first_timestamp", "last_timestamp"}``."""
        return {
            "n_samples": self.n_samples,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
        }


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
        Used in messages (the session folder); its last part names the thread.
    buffer_seconds
        Per-stream queue limit before ``append`` blocks.
    max_latency
        Longest time (s) a sample waits in memory before it is written.
    on_error
        Called once, on the writer thread, with the exception when a write fails, before
        ``append`` and ``flush`` start raising. Must not wait for this writer.
    after_batch
        Called on the writer thread after each batch written, and at least every
        :data:`IDLE_HOUSEKEEPING_S` s while no samples come (housekeeping: a ``meta.json`` or
        labels to retry, the integrity record); what it raises is logged and ignored.
    """

    def __init__(
        self,
        name: str,
        *,
        buffer_seconds: float = 30.0,
        max_latency: float = 1.0,
        on_error: Callable[[BaseException], None] | None = None,
        after_batch: Callable[[], None] | None = None,
    ):
        self._name = name
        self._buffer_seconds = buffer_seconds
        self._max_latency = max_latency
        self._on_error = on_error
        self._after_batch = after_batch
        self._idle_due = time.monotonic() + IDLE_HOUSEKEEPING_S
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._flush_waiters = 0
        self._closing = False
        self._error: BaseException | None = None
        self._lost: dict[str, LostSamples] = {}
        self._thread = threading.Thread(
            target=self._run, name=f"labsession-writer-{Path(name).name}", daemon=True
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

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the writer, or None while it works."""
        return self._error

    def lost(self) -> dict[str, LostSamples]:
        """Per stream, the samples appended that will never be on disk (after a failed write)."""
        with self._cond:
            return {name: LostSamples(**vars(lost)) for name, lost in self._lost.items()}

    def append(self, stream: str, data: np.ndarray, ts: np.ndarray) -> None:
        """Queue validated, owned copies of samples; block only while the queue is full.

        Raises
        ------
        SessionError
            At once, once a write has failed: the samples are counted as lost.
        """
        n = data.shape[0]
        with self._cond:
            if self._closing:
                raise SessionError(f"{self._name}: closing; {n} samples of {stream!r} not taken")
            if self._error is not None:
                self._lost.setdefault(stream, LostSamples()).add(ts)
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
                    if self._error is not None:
                        self._lost.setdefault(stream, LostSamples()).add(ts)
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
                f"{self._name}: writing to disk failed ({describe_error(self._error)}); the "
                "samples appended since the last successful write are lost, and so are those "
                "appended since"
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
                if self._after_batch is not None:  # housekeeping goes on while no data comes
                    if now >= self._idle_due:
                        self._idle_due = now + IDLE_HOUSEKEEPING_S
                        return batch, False
                    waits.append(self._idle_due - now)
                self._cond.wait(max(0.01, min(waits)) if waits else None)

    def _run(self) -> None:
        while True:
            batch, done = self._next_batch()
            if done:
                return
            written: set[str] = set()
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
                    written.add(name)
            except BaseException as exc:  # noqa: BLE001 - logged by _fail; the writer stops
                self._fail(exc, {k: v for k, v in batch.items() if k not in written})
                return
            if self._after_batch is not None:
                try:
                    self._after_batch()
                except Exception:
                    log.exception("%s: housekeeping after a write failed", self._name)

    def _fail(
        self, exc: BaseException, unwritten: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Stop for good after a failed write: cut the arrays back, report, count what is lost.

        In this order: whoever learns of the error (the callback, or ``flush`` woken by it)
        finds the arrays already cut back and the error already reported.
        """
        log.error("%s: writing to disk failed (%s)", self._name, describe_error(exc), exc_info=exc)
        self._roll_back()
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                log.exception("%s: the write-error callback failed", self._name)
        with self._cond:
            self._error = exc
            for name, queue in self._queues.items():
                lost = self._lost.setdefault(name, LostSamples())
                if name in unwritten:
                    lost.add(unwritten[name][1])
                for _data, ts in queue.blocks:
                    lost.add(ts)
                queue.blocks.clear()
                queue.n_queued = queue.in_flight = 0
                if not lost.n_samples:
                    del self._lost[name]
            self._cond.notify_all()

    def _roll_back(self) -> None:
        """Cut every array back to the samples written before the failed batch.

        A batch that failed part-way may have grown an array, or written some of its chunks and
        not others; cutting back (which deletes those chunks first, freeing their space) leaves
        only whole, valid samples. If even that fails, :meth:`Session.attach` trims later.
        """
        for name, queue in self._queues.items():
            n = queue.n_written
            for array, shape in (
                (queue.data_array, (n, queue.info.n_channels)),
                (queue.ts_array, (n,)),
            ):
                if array.shape != shape:
                    try:
                        array.resize(shape)
                    except Exception as exc:  # noqa: BLE001 - attach trims what is left
                        log.warning(
                            "%s: stream %r could not be cut back to its %d written samples (%s); "
                            "Session.attach will trim it",
                            self._name,
                            name,
                            n,
                            describe_error(exc),
                        )
