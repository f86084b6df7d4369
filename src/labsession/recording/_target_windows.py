"""Windows with a dense regression target: each window's target at its last sample's time.

For regression (force, cursor, joint angle) every window needs a target value, not only those
inside labelled segments. The target is a continuous trajectory the subject follows, recorded
as a stream of its own in the layout of :mod:`labsession.recording._target_track` (value(s),
then the phase index), as :class:`~labsession.sources.TargetSource` (and MyoGestic's) writes
it. Each window of the primary stream gets the target at the timestamp of its last sample
(the model is causal: the window's end is the instant it answers for), interpolated within a
phase; a window ending outside the target's span or in a gap of it, or spanning a dropout of
the primary stream, is dropped (counted on :attr:`TargetWindowIterator.dropped`).

MyoGestic's ``iter_target_windows`` makes the same choices (window end, interpolation within
a phase, drops, a gap of more than 3 periods, a span of at most 1.5 window lengths); what
differs: seconds instead of milliseconds, phase indices instead of phase names, several target
values, a session without the target stream is skipped (listed) instead of raising.

Samples and timestamps are read as labelled windows read them (a few blocks at a time, see
:mod:`labsession.recording._windows`), and the target one block at a time: memory does not
grow with the session.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np

from labsession.recording import _blocks
from labsession.recording._blocks import BlockReader
from labsession.recording._store import SessionStore
from labsession.recording._target_track import (
    GAP,
    GAP_PERIODS,
    OUTSIDE,
    TargetTrack,
    UnusableTarget,
)
from labsession.recording._windows import (
    PathLike,
    WindowIterator,
    _check_paths,
    _check_seconds,
    _each_store,
    _geometry,
    _survey,
)

__all__ = ["TargetWindow", "TargetWindowIterator", "iter_target_windows"]

_FLOAT64 = np.dtype(np.float64)
_FLOAT32 = np.dtype(np.float32)
#: Why a window was dropped, besides OUTSIDE and GAP: it spans a dropout of the primary
#: stream; it ends in a phase not asked for (or where no target was shown).
SPAN = "span"
PHASE = "phase"
#: A window may span this many times its nominal length (``(win - 1) / fs``) before its
#: samples are taken to straddle a dropout of the primary stream, as in MyoGestic.
SPAN_SLACK = 1.5


class TargetWindow(NamedTuple):
    """One window of the primary stream and the target at its end.

    Unpacks as ``window, ts, target, phase = item`` (MyoGestic's order, plus the phase).
    """

    #: ``(n_channels, n_samples)`` float32 primary window, channels first.
    window: np.ndarray
    #: ``(n_samples,)`` float64 timestamps of the window (s, LSL clock).
    ts: np.ndarray
    #: ``(n_values,)`` float32 target value(s) at ``ts[-1]``.
    target: np.ndarray
    #: Phase index of the target at ``ts[-1]``.
    phase: int


class TargetWindowIterator(WindowIterator[TargetWindow]):
    """:class:`WindowIterator` that also counts the windows dropped, by reason.

    :attr:`dropped` maps ``"outside"`` (the window ends before the target's first sample or
    after its last), ``"gap"`` (it ends in a gap of the target), ``"span"`` (its samples span
    more than 1.5 times the window's length: a dropout of the primary stream) and ``"phase"``
    (it ends in a phase not asked for, or where no target was shown) to the number of windows
    dropped for it, over all sessions read so far; :meth:`summary` includes them.
    """

    def __init__(
        self, produce: Callable[[TargetWindowIterator], Iterator[TargetWindow]], what: str
    ):
        self.dropped = {OUTSIDE: 0, GAP: 0, SPAN: 0, PHASE: 0}
        super().__init__(produce, what)  # type: ignore[arg-type]

    def summary(self) -> str:
        """One line: windows yielded and dropped, and each skipped session's reason."""
        text = super().summary()
        dropped = ", ".join(f"{n} {why}" for why, n in self.dropped.items() if n)
        if not dropped:
            return text
        head, sep, tail = text.partition("; ")
        return f"{head} ({dropped} dropped){sep}{tail}"


def _check_phases(phases: Iterable[int] | None) -> set[int] | None:
    if phases is None:
        return None
    if isinstance(phases, numbers.Integral | str):
        phases = [phases]
    wanted = set()
    for phase in phases:
        if isinstance(phase, bool) or not isinstance(phase, numbers.Integral):
            raise TypeError(
                f"phases must hold phase indices (integers: phases are numbered, not named), "
                f"got {phase!r}"
            )
        wanted.add(int(phase))
    if not wanted:
        raise ValueError("phases is empty: pass None for every phase, or the indices to keep")
    return wanted


def _check_gap_periods(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"max_gap_periods must be a number of sample periods, got {value!r}")
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"max_gap_periods must be a finite number >= 1, got {value!r}")
    return float(value)


def iter_target_windows(
    paths: PathLike | Iterable[PathLike],
    stream_name: str,
    target_stream_name: str,
    win_seconds: float,
    hop_seconds: float,
    phases: Iterable[int] | None = None,
    *,
    max_gap_periods: float = GAP_PERIODS,
    copy: bool = True,
) -> TargetWindowIterator:
    """Yield windows of a stream with the value of a continuous target at each window's end.

    Windows run over the whole of ``stream_name`` (labels are ignored), from its first sample
    in steps of ``hop_seconds``, as :func:`iter_aligned_windows` cuts them. Each gets the
    target at the timestamp of its last sample, ``ts[-1]``, read from ``target_stream_name``:

    - the target stream's channels are the target value(s) then the phase index (the layout
      :class:`~labsession.sources.TargetSource` records, as MyoGestic's does);
    - on a target sample, its value; between two samples of one phase, the linear
      interpolation; between two samples of different phases, the earlier one's value, held
      (values are never blended across phases); the phase is the earlier sample's;
    - dropped (and counted on :attr:`TargetWindowIterator.dropped`): a window whose end is
      before the target's first sample or after its last (``"outside"``), or between two
      target samples more than ``max_gap_periods`` sample periods apart (``"gap"``); one whose
      samples span more than 1.5 times the window's length, so a dropout of ``stream_name``
      lies inside it (``"span"``); one whose phase is not kept (``"phase"``).

    Parameters
    ----------
    paths
        Session folders and/or ``.session.zip`` archives (one path or an iterable), read in
        order.
    stream_name
        The stream to cut into windows, e.g. ``"emg"``.
    target_stream_name
        The target stream, e.g. ``"force"``. A session without it (or whose target stream is
        not in time order, or not in the layout) is skipped and listed on
        :attr:`WindowIterator.skipped`; if no session has it, nothing is yielded.
    win_seconds, hop_seconds
        Window length and step (s, > 0), in samples of ``stream_name`` as in
        :func:`iter_labeled_windows` (``floor(seconds * fs)``, hop at least one sample).
    phases
        Keep only windows whose end falls in one of these phase indices, e.g. only the ramps
        of a ramp-hold protocol. Default: every phase but the negative ones (-1: no target
        was shown), as labelled windows skip class -1.
    max_gap_periods
        Two target samples further apart than this many of its sample periods leave a gap
        (>= 1; default 3, as MyoGestic: jitter and one lost sample are no gap).
    copy
        True (default): each window and its timestamps are new arrays. False: read-only views
        into the block being read (see :func:`iter_labeled_windows`).

    Yields
    ------
    TargetWindow
        ``(window, ts, target, phase)``: ``window`` ``(n_channels, n_samples)`` float32,
        ``ts`` ``(n_samples,)`` float64 (s), ``target`` ``(n_values,)`` float32 at ``ts[-1]``,
        ``phase`` int.

    Returns
    -------
    TargetWindowIterator
        Iterate it for the windows; ``.skipped``, ``.dropped`` and ``.summary()`` say what was
        left out and why.

    Raises
    ------
    ValueError
        Before any window: ``win_seconds``/``hop_seconds`` not > 0, ``max_gap_periods`` < 1,
        ``paths`` or ``phases`` empty, or no session recorded ``stream_name``.
    TypeError
        A phase that is not an integer, or a length that is not a number.
    SessionError
        No session can be opened, or a chunk of an opened session is corrupt.

    Examples
    --------
    >>> for window, ts, force, phase in iter_target_windows(
    ...     ["sessions/a.session.zip"], "emg", "force", 0.2, 0.05
    ... ):  # doctest: +SKIP
    ...     force  # array([0.42], dtype=float32): the force target at ts[-1]
    """
    win_seconds = _check_seconds("win_seconds", win_seconds)
    hop_seconds = _check_seconds("hop_seconds", hop_seconds)
    gap_periods = _check_gap_periods(max_gap_periods)
    wanted = _check_phases(phases)
    session_paths = _check_paths(paths)
    what = f"windows of {stream_name!r} with targets from {target_stream_name!r}"
    # The target stream is optional per session (none having it yields nothing); the stream
    # cut must exist somewhere (else its name is misspelt).
    _survey(session_paths, [stream_name], need_labels=False, what=what)
    options = _Options(target_stream_name, win_seconds, hop_seconds, wanted, gap_periods, copy)

    def produce(it: TargetWindowIterator) -> Iterator[TargetWindow]:
        for store in _each_store(it, session_paths):
            yield from _target_session(it, store, stream_name, options)
        it._finish()

    return TargetWindowIterator(produce, what)


class _Options(NamedTuple):
    target: str
    win_seconds: float
    hop_seconds: float
    wanted: set[int] | None
    gap_periods: float
    copy: bool


def _target_session(
    it: TargetWindowIterator, store: SessionStore, stream: str, options: _Options
) -> Iterator[TargetWindow]:
    target, wanted, copy = options.target, options.wanted, options.copy
    if target not in store.stream_names:
        it._skip(store.path, f"no target stream {target!r} (streams: {store.stream_names})")
        return
    geometry = _geometry(it, store, stream, options.win_seconds, options.hop_seconds)
    if geometry is None:
        return
    win, hop, n = geometry
    try:
        track = TargetTrack(store, target, max_gap_periods=options.gap_periods)
    except UnusableTarget as exc:
        it._skip(store.path, str(exc))
        return
    max_span = SPAN_SLACK * (win - 1) / store.stream_info(stream).fs
    ts_block = max(int(store.ts_stores[stream].chunks[0]), _blocks.BLOCK_BYTES // 64)
    reader = BlockReader(store, stream, n, prefetch=True, channels_first=copy)
    ts_reader = BlockReader(
        store, stream, n, dtype=_FLOAT64, timestamps=True, block_bytes=ts_block * 8
    )
    dropped = {OUTSIDE: 0, GAP: 0, SPAN: 0, PHASE: 0}
    count = 0
    try:
        for start in range(0, n - win + 1, hop):
            stop = start + win
            ts = ts_reader.get(start, stop)
            found = track.lookup(float(ts[-1]))
            if isinstance(found, str):
                dropped[found] += 1
                continue
            if ts[-1] - ts[0] > max_span:
                dropped[SPAN] += 1
                continue
            values, phase = found
            keep = phase >= 0 if wanted is None else phase in wanted
            if not keep:
                dropped[PHASE] += 1
                continue
            window = reader.get(start, stop) if copy else reader.get(start, stop).T
            value = values.astype(_FLOAT32)
            if copy:
                yield TargetWindow(window.copy(), ts.copy(), value, phase)
            else:
                yield TargetWindow(window, ts, value, phase)
            count += 1
    finally:
        reader.close()
        ts_reader.close()
        track.close()
        with contextlib.suppress(ReferenceError):  # the iterator was dropped mid-loop
            for why, k in dropped.items():
                it.dropped[why] += k
            it._held(reader.peak_held_bytes + ts_reader.peak_held_bytes + track.peak_held_bytes)
    if count:
        it.n_windows += count
        it.n_sessions += 1
        return
    reasons = []
    if dropped[OUTSIDE]:
        span = f"{track.first:.3f} to {track.last:.3f} s"
        reasons.append(f"{dropped[OUTSIDE]} end outside its span ({span})")
    if dropped[GAP]:
        reasons.append(f"{dropped[GAP]} end in a gap of it")
    if dropped[SPAN]:
        reasons.append(f"{dropped[SPAN]} span a dropout of {stream!r}")
    if dropped[PHASE]:
        kept = "phases >= 0" if wanted is None else f"phases {sorted(wanted)}"
        reasons.append(f"{dropped[PHASE]} end outside {kept}")
    it._skip(
        store.path, f"no window of {stream!r} has a target in {target!r}: " + ", ".join(reasons)
    )
