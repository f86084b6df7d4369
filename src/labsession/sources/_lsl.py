"""Record any Lab Streaming Layer stream, resolved by name (mne-lsl's liblsl binding)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from labsession.recording import StreamInfo
from labsession.sources._base import Chunk, Source

#: Seconds of one resolve call while connecting: how soon :meth:`LSLSource.interrupt` is heard.
_RESOLVE_SLICE = 0.25

__all__ = ["LSLSource"]

log = logging.getLogger(__name__)


class LSLSource(Source):
    """Pull chunks from the LSL stream called ``name``, surviving the outlet going away.

    On connect the stream is resolved by name and its channel count, rate, sample type and
    channel names become the :class:`StreamInfo`. When the outlet disappears, :attr:`state`
    turns ``"disconnected"``, a warning is logged, ``read`` returns ``None`` and the stream is
    resolved again every ``retry_interval`` seconds; when an outlet of the same name and layout
    returns, reading resumes (state ``"connected"``). Other streams keep recording meanwhile.

    Timestamps: :meth:`read` returns them as the outlet sent them, mapped onto this machine's
    LSL clock (``"clocksync"``), nothing else. They need not increase: an outlet that pushes
    chunks without timestamps gets them from liblsl, which stamps each chunk back from its push
    time, so a chunk pushed late overlaps the next one (64 channels at 2,048 Hz in chunks of 32
    on a loaded machine: 6 to 39 backward steps in 8 s, up to 2.5 ms back; a sender stall
    makes its catch-up burst overlap by a whole chunk). A session counts every backward step of
    these stamps in its ``integrity`` record and stores them strictly increasing (for
    regular-rate streams; see ``labsession.recording._integrity``): a stamp is moved forward only
    when needed, to a thousandth of a period after the one before, never later than the latest
    stamp the outlet gave plus that step per sample, never by more than 0.25 s.

    liblsl's own ``"dejitter"`` (a recursive least-squares line over the sample count, half-life
    90 s) is not the default: it hides gaps, since it counts samples rather than watching the
    clock (a 0.5 s stall of the outlet came out as no step over 0.7 ms, the stamps after it
    off by up to 0.5 s until the fit caught up), and the raw backward steps are lost to the
    integrity record. ``"monotize"`` (mne-lsl's spelling) clamps to the previous stamp, so it
    gives equal stamps, not increasing ones, and liblsl allows it only with ``"dejitter"``.
    Both remain available through ``processing_flags`` for a stream known to have no gaps.

    Parameters
    ----------
    name
        The LSL stream name.
    timeout
        Seconds :meth:`connect` waits for the stream to appear.
    stype
        Optional LSL stream type to disambiguate (e.g. ``"EMG"``).
    processing_flags
        liblsl post-processing of timestamps. The default ``("clocksync",)`` maps remote
        timestamps onto this machine's clock; ``()`` keeps them exactly as pushed;
        ``("clocksync", "dejitter")`` smooths them (see above for why it is not the default).
    retry_interval
        Seconds between reconnection attempts while disconnected.
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: float = 5.0,
        stype: str | None = None,
        processing_flags: Sequence[str] = ("clocksync",),
        retry_interval: float = 1.0,
    ):
        self.name = name
        self.timeout = timeout
        self.stype = stype
        self.processing_flags = tuple(processing_flags)
        self.retry_interval = retry_interval
        self.info: StreamInfo | None = None
        self.state = "idle"
        self._inlet = None
        self._next_retry = 0.0
        self._interrupted = threading.Event()

    def _resolve(self, timeout: float):
        from mne_lsl.lsl import resolve_streams

        found = resolve_streams(timeout=timeout, name=self.name, stype=self.stype)
        return found[0] if found else None

    def _open(self, sinfo) -> StreamInfo:
        from mne_lsl.lsl import StreamInlet

        inlet = StreamInlet(
            sinfo, recover=False, processing_flags=list(self.processing_flags) or None
        )
        inlet.open_stream(timeout=self.timeout)
        if "clocksync" in self.processing_flags:
            # The first clock-offset estimate blocks; take it here, not in the first read().
            inlet.time_correction(timeout=self.timeout)
        full = inlet.get_sinfo(timeout=self.timeout)
        names = full.get_channel_names()
        info = StreamInfo(
            n_channels=full.n_channels,
            fs=full.sfreq,
            dtype=np.dtype(full.dtype),
            channel_names=names if names and all(names) else None,
        )
        self._inlet = inlet
        return info

    def connect(self) -> StreamInfo:
        """Resolve the stream (waiting up to ``timeout``) and open an inlet.

        Raises
        ------
        TimeoutError
            If no stream called ``name`` appears in time.
        ValueError
            If the stream is irregular (rate 0), which sessions cannot record yet.
        """
        # In slices, so that interrupt() ends the wait within one (stopping never waits it out).
        deadline = time.monotonic() + self.timeout
        while True:
            if self._interrupted.is_set():
                raise TimeoutError(f"connecting to LSL stream {self.name!r} was interrupted")
            left = deadline - time.monotonic()
            if left <= 0:  # (liblsl refuses a timeout of 0)
                sinfo = None
                break
            sinfo = self._resolve(min(_RESOLVE_SLICE, left))
            if sinfo is not None or left <= _RESOLVE_SLICE:
                break
        if sinfo is None:
            raise TimeoutError(f"no LSL stream named {self.name!r} found within {self.timeout} s")
        if sinfo.sfreq <= 0:
            raise ValueError(f"LSL stream {self.name!r} has an irregular rate; not supported yet")
        self.info = self._open(sinfo)
        self.state = "connected"
        return self.info

    def read(self) -> Chunk | None:
        """Return the samples pulled since the last call, or ``None`` (also while disconnected)."""
        from mne_lsl.lsl.stream_inlet import StreamInlet  # noqa: F401 - ensures liblsl is loaded

        if self.state == "disconnected":
            self._try_reconnect()
            return None
        if self._inlet is None:
            raise RuntimeError(f"LSLSource {self.name!r}: read() before connect()")
        try:
            data, ts = self._inlet.pull_chunk(timeout=self.poll_interval)
        except RuntimeError as exc:  # liblsl's LostError: the outlet went away
            log.warning(
                "LSL stream %r disconnected (%s); will reconnect when it returns", self.name, exc
            )
            self._drop_inlet()
            self.state = "disconnected"
            self._next_retry = time.monotonic()
            return None
        if len(ts) == 0:
            return None
        # mne-lsl returns views of its pull buffer, which the next pull overwrites: copy.
        return np.array(data, copy=True), np.array(ts, dtype=np.float64, copy=True)

    def _try_reconnect(self) -> None:
        now = time.monotonic()
        if now < self._next_retry:
            time.sleep(min(self.poll_interval, self._next_retry - now))
            return
        self._next_retry = now + self.retry_interval
        sinfo = self._resolve(min(self.retry_interval, 0.5))
        if sinfo is None:
            return
        try:
            info = self._open(sinfo)
        except Exception as exc:  # noqa: BLE001 - a flaky outlet: try again later
            log.info("LSL stream %r found but could not be opened yet (%s)", self.name, exc)
            self._drop_inlet()
            return
        if self.info is not None and (info.n_channels, info.fs, info.dtype) != (
            self.info.n_channels,
            self.info.fs,
            self.info.dtype,
        ):
            log.error(
                "LSL stream %r came back with a different layout (%s, was %s); not reconnecting",
                self.name,
                info,
                self.info,
            )
            self._drop_inlet()
            return
        log.warning("LSL stream %r reconnected", self.name)
        self.state = "connected"

    def _drop_inlet(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            try:
                inlet.close_stream()
            except Exception:
                log.debug("closing inlet of %r", self.name, exc_info=True)

    def interrupt(self) -> None:
        """Make a :meth:`connect` waiting for the stream on another thread give up within a
        fraction of a second (it raises :class:`TimeoutError`); :meth:`close` clears it."""
        self._interrupted.set()

    def close(self) -> None:
        """Close the inlet (idempotent); a later :meth:`connect` waits for the stream again."""
        self._drop_inlet()
        self.state = "idle"
        self._interrupted.clear()
