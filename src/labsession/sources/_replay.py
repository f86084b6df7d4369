"""Replay a recorded stream as if it were live: :class:`ReplaySource`."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Literal

import numpy as np

from labsession.core.clock import local_clock
from labsession.errors import SessionError
from labsession.recording import LabelEvent, SessionStore, StreamInfo, open_session_store
from labsession.recording._blocks import BlockReader
from labsession.sources._base import Chunk, Source

__all__ = ["ReplaySource"]


class ReplaySource(Source):
    """Re-emit a recorded stream at its original pace (times ``speed``), as a live source.

    Pacing comes from a monotonic clock: at any moment the samples emitted are those whose
    recorded time since the first sample, divided by ``speed``, has elapsed since
    :meth:`connect` (sleep errors never accumulate). The recorded timestamps set the pace, so
    jitter and gaps in the recording are replayed as they happened.

    Timestamps (``timestamps=``): ``"recorded"`` (the default, as MyoGestic's ReplaySource)
    emits each sample with the timestamp it was recorded with, so the recording's labels
    (:meth:`read_labels`, or the session's own label track) line up with the samples.
    ``"live"`` shifts them onto the live LSL clock (:func:`labsession.core.clock.local_clock`):
    ``ts + offset`` with ``offset = local_clock() at connect - ts[0]``, so the first sample is
    stamped with the time of :meth:`connect`; use it when the replay stands in for a device
    next to live ones, or is recorded again with labels clicked now (those are stamped with
    ``local_clock()``). Either way the spacing is the recorded one: at ``speed != 1`` the
    samples come faster or slower than their stamps advance (so ``fs`` stays true for
    processing). When looping, lap ``k`` adds ``k * period`` to the stamps, where ``period`` is
    the recorded span plus one sample period ``1 / fs``: the first sample of a lap follows the
    last of the previous one by one sample period, with no gap and no duplicate, so the stamps
    keep increasing in both modes (MyoGestic's loop starts its stamps over instead).

    Parameters
    ----------
    session_path
        A session folder or ``.session.zip``.
    stream_name
        The stream to replay.
    speed
        Pace relative to the recording (1 = real time, 2 = twice as fast, > 0); 0 = manual:
        nothing is emitted until :meth:`step` says how many samples.
    loop
        Start again from the first sample after the last one (default); if False, :meth:`read`
        returns None once everything was emitted (:attr:`finished`).
    timestamps
        ``"recorded"`` (default): the recorded timestamps (plus ``k * period`` on lap ``k``);
        ``"live"``: shifted onto the LSL clock, the first sample stamped at :meth:`connect`.
    replay_labels
        Also replay the recording's label track: :meth:`read_labels` returns the labels the
        emitted samples have passed, shifted like the samples, so a predict path can be scored
        against them (and :attr:`current_class` tells the class in effect).
    max_chunk_seconds
        Most samples one :meth:`read` returns when paced (s of recording, default 1 s); a
        reader that fell further behind catches up over the next reads.

    Notes
    -----
    The stream's timestamps (8 bytes per sample) are held in memory for pacing; samples are
    read a block of about 4 MiB at a time. Call :meth:`read` (and :meth:`close`) from one
    thread, as an acquisition loop does; :meth:`step` may come from any thread.

    Examples
    --------
    >>> src = ReplaySource("sessions/a.session.zip", "emg", speed=0)  # doctest: +SKIP
    >>> info = src.connect()  # doctest: +SKIP
    >>> src.step(100)  # doctest: +SKIP
    >>> data, ts = src.read()  # doctest: +SKIP  # (100, n_channels), (100,)
    """

    def __init__(
        self,
        session_path: str | os.PathLike[str],
        stream_name: str,
        speed: float = 1.0,
        loop: bool = True,
        *,
        timestamps: Literal["recorded", "live"] = "recorded",
        replay_labels: bool = False,
        max_chunk_seconds: float = 1.0,
    ):
        if isinstance(speed, bool) or not (
            isinstance(speed, int | float) and math.isfinite(speed) and speed >= 0
        ):
            raise ValueError(f"speed must be a finite number >= 0 (0 = manual), got {speed!r}")
        if not (math.isfinite(max_chunk_seconds) and max_chunk_seconds > 0):
            raise ValueError(f"max_chunk_seconds must be > 0, got {max_chunk_seconds!r}")
        if timestamps not in ("recorded", "live"):
            raise ValueError(f"timestamps must be 'recorded' or 'live', got {timestamps!r}")
        self.session_path = Path(session_path)
        self.stream_name = stream_name
        self.speed = float(speed)
        self.loop = bool(loop)
        self.timestamps: Literal["recorded", "live"] = timestamps
        self.replay_labels = bool(replay_labels)
        self._max_chunk_seconds = float(max_chunk_seconds)
        self._cond = threading.Condition()
        self._store: SessionStore | None = None
        self.info: StreamInfo | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def connect(self) -> StreamInfo:
        """Open the recording and start the replay clock; returns the stream's info.

        Raises
        ------
        SessionError
            The session cannot be opened, the stream has no samples, or one of its timestamps
            is NaN or infinite (naming the first; labsession never writes one, other writers
            or a hand-edited file may).
        ValueError
            The session has no stream ``stream_name`` (the message lists its streams).
        """
        self.close()
        store = open_session_store(self.session_path)
        try:
            if self.stream_name not in store.stream_names:
                raise ValueError(
                    f"{self.session_path}: no stream {self.stream_name!r} to replay; "
                    f"streams here: {store.stream_names}"
                )
            info = store.stream_info(self.stream_name)
            n = store.n_samples(self.stream_name)
            if n == 0:
                raise SessionError(
                    f"{self.session_path}: stream {self.stream_name!r} has no samples to replay"
                )
            ts = store.get_timestamps(self.stream_name)
            if (bad := np.flatnonzero(~np.isfinite(ts))).size:  # hand-edited, another writer
                raise SessionError(
                    f"{self.session_path}: stream {self.stream_name!r} has timestamp "
                    f"{float(ts[bad[0]])!r} at sample {int(bad[0])} ({bad.size} not finite): "
                    f"replay paces and stamps by the recorded times, which must be finite"
                )
        except BaseException:
            store.close()
            raise
        # Pace by the recorded times, made non-decreasing so a clock step back cannot stall.
        rel = np.maximum.accumulate(ts - ts[0])
        labels = store.label_track if self.replay_labels else []
        with self._cond:
            self._store, self.info = store, info
            self._n = n
            self._ts, self._rel = ts, rel
            self._period = float(rel[-1]) + 1.0 / info.fs
            self._reader = BlockReader(store, self.stream_name, n, dtype=None)
            self._max_chunk = max(1, round(self._max_chunk_seconds * info.fs))
            self._labels = labels
            label_rel = np.clip([e.timestamp - ts[0] for e in labels], 0.0, rel[-1])
            self._label_sample = np.searchsorted(rel, label_rel, side="left")
            self._label_pos = 0
            self._emitted = 0
            self._stepped = 0
            self._offset = local_clock() - float(ts[0]) if self.timestamps == "live" else 0.0
            self._t0 = time.monotonic()
        return info

    def close(self) -> None:
        """Close the recording (idempotent); :meth:`connect` starts again from the start."""
        with self._cond:
            store, self._store = self._store, None
            self._cond.notify_all()
        if store is not None:
            store.close()

    # -- state ---------------------------------------------------------------------------------
    @property
    def n_emitted(self) -> int:
        """Samples emitted since :meth:`connect` (all laps)."""
        return self._emitted if self._store is not None else 0

    @property
    def offset(self) -> float:
        """Seconds added to the recorded timestamps of lap 0: 0.0 for ``timestamps="recorded"``,
        ``local_clock()`` at :meth:`connect` minus the first timestamp for ``"live"``."""
        self._check_connected()
        return self._offset

    @property
    def period(self) -> float:
        """Seconds of recording per lap (recorded span plus one sample period)."""
        self._check_connected()
        return self._period

    @property
    def n_remaining(self) -> int | None:
        """Samples still to emit (for ``speed=0``: still to :meth:`step`); None when looping."""
        self._check_connected()
        if self.loop:
            return None
        return self._n - (self._stepped if self.speed == 0 else self._emitted)

    @property
    def finished(self) -> bool:
        """True once every sample was emitted and ``loop`` is False."""
        return self._store is not None and not self.loop and self._emitted >= self._n

    @property
    def current_class(self) -> int | None:
        """Class in effect at the last emitted sample (``replay_labels=True``), else None.

        The class of the last label due at or before that sample (labels are due as
        :meth:`read_labels` says); None before the first label or without labels.
        """
        with self._cond:
            if self._store is None or not self._labels or self._emitted == 0:
                return None
            lap, k = divmod(self._emitted - 1, self._n)
            j = int(np.searchsorted(self._label_sample, k, side="right")) - 1
            if j < 0:
                if lap == 0:
                    return None
                j = len(self._labels) - 1
            return self._labels[j].class_index

    def _check_connected(self) -> None:
        if self._store is None:
            raise RuntimeError(f"ReplaySource({str(self.session_path)!r}): call connect() first")

    # -- pacing --------------------------------------------------------------------------------
    def _due(self, now: float) -> int:
        """Samples due by monotonic time ``now`` (all laps); called with the lock held."""
        if self.speed == 0:
            return self._stepped
        elapsed = max(0.0, (now - self._t0) * self.speed)
        lap = math.floor(elapsed / self._period)
        k = int(np.searchsorted(self._rel, elapsed - lap * self._period, side="right"))
        due = lap * self._n + k
        return due if self.loop else min(due, self._n)

    def _due_time(self, index: int) -> float:
        """Monotonic time at which global sample ``index`` is due (paced mode)."""
        lap, k = divmod(index, self._n)
        return self._t0 + (lap * self._period + float(self._rel[k])) / self.speed

    def step(self, n_samples: int) -> None:
        """Make the next ``n_samples`` samples due (``speed=0`` only); :meth:`read` returns them.

        Raises
        ------
        RuntimeError
            Not connected, or ``speed`` is not 0.
        ValueError
            ``n_samples`` < 0, or more samples than are left when ``loop`` is False.
        """
        self._check_connected()
        if self.speed != 0:
            raise RuntimeError(f"step() is for speed=0 (manual) replay; this one has {self.speed}")
        if int(n_samples) != n_samples or n_samples < 0:
            raise ValueError(f"n_samples must be an integer >= 0, got {n_samples!r}")
        with self._cond:
            if not self.loop and self._stepped + n_samples > self._n:
                raise ValueError(
                    f"step({n_samples}): only {self._n - self._stepped} samples are left of "
                    f"{self.stream_name!r} and loop is False"
                )
            self._stepped += int(n_samples)
            self._cond.notify_all()

    def read(self) -> Chunk | None:
        """Return the samples due since the last call, or None (after at most ``poll_interval``).

        Returns
        -------
        (data, ts) or None
            ``data`` ``(n, n_channels)`` in the stream's dtype (a new array); ``ts`` ``(n,)``
            float64 seconds: the recorded timestamps (``timestamps="recorded"``) or those
            shifted onto the live clock (``"live"``), plus ``k * period`` on lap ``k``.

        Raises
        ------
        SessionError
            The samples due touch a corrupt chunk of the recording (every chunk is verified:
            zip CRC, zstd checksum); the message names it. Those samples are never emitted:
            the replay goes on after them, so a stream's read loop records the error and
            carries on.
        """
        self._check_connected()
        deadline = time.monotonic() + self.poll_interval
        with self._cond:
            while True:
                if self._store is None:
                    return None
                now = time.monotonic()
                available = self._due(now) - self._emitted
                if available > 0:
                    count = available if self.speed == 0 else min(available, self._max_chunk)
                    start = self._emitted
                    self._emitted += count
                    break
                if now >= deadline:
                    return None
                wake = deadline
                if self.speed > 0 and not self.finished:
                    wake = min(wake, self._due_time(self._emitted))
                self._cond.wait(max(0.0, wake - now))
        # Outside the lock: reading a block is disk I/O, and step() must not wait for it.
        return self._take(start, count)

    def _take(self, start: int, count: int) -> Chunk:
        """Samples ``[start, start + count)`` of the endless replay (the reading thread only)."""
        data_parts, ts_parts = [], []
        index, end = start, start + count
        while index < end:
            lap, k = divmod(index, self._n)
            m = min(end - index, self._n - k)
            data_parts.append(self._reader.get(k, k + m))
            ts_parts.append(self._ts[k : k + m] + (self._offset + lap * self._period))
            index += m
        data = np.concatenate(data_parts) if len(data_parts) > 1 else data_parts[0].copy()
        ts = np.concatenate(ts_parts) if len(ts_parts) > 1 else ts_parts[0]
        return data, ts

    def read_labels(self) -> list[LabelEvent]:
        """Labels whose sample has been emitted since the last call, shifted like the samples.

        A label is due with the sample nearest after its recorded time (labels before the
        first sample come with it, labels after the last with the last). Empty unless
        ``replay_labels=True``. Each lap replays the whole track again.
        """
        self._check_connected()
        out = []
        with self._cond:
            n_labels = len(self._labels)
            while n_labels:
                lap, j = divmod(self._label_pos, n_labels)
                if lap * self._n + int(self._label_sample[j]) >= self._emitted:
                    break
                event = self._labels[j]
                shift = self._offset + lap * self._period
                out.append(LabelEvent(event.timestamp + shift, event.class_index))
                self._label_pos += 1
        return out

    def __repr__(self) -> str:
        return (
            f"ReplaySource({str(self.session_path)!r}, {self.stream_name!r}, speed={self.speed}, "
            f"loop={self.loop}, timestamps={self.timestamps!r})"
        )
