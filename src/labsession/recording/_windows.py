"""Training windows from recorded sessions: the window iterator, and labelled windows.

:class:`WindowIterator` and the checks here are shared by every window function: labelled
windows (here), aligned windows (:mod:`labsession.recording._aligned_windows`) and windows
with a dense target (:mod:`labsession.recording._target_windows`).

The labelled and aligned windows are MyoGestic's (``myogestic.session.iter_labeled_windows``
and ``iter_aligned_windows``, whose ``window_ms``/``hop_ms``/``n_alignment_samples`` are
``1000 * win_seconds``, ``1000 * hop_seconds`` and ``align_window_samples`` here): same segments,
same window starts, same float32 values. What differs is how they are read:

- chunk-wise: labelled windows hold a few blocks (``_blocks.BLOCK_BYTES`` each) of samples and
  of timestamps (the next block read ahead by a worker thread), so memory does not grow with the
  session and a session larger than RAM iterates (the first timestamp blocks read to find the
  segments, up to one sample block's bytes, are kept for the windows instead of being decoded
  twice); aligned windows keep their streams' timestamps (8 bytes per sample). Chunks in the
  layout both tools write are read straight from the folder or the zip member, skipping Zarr's
  per-chunk overhead;
- verified: every chunk is checked before its numbers are used (zip CRC, zstd checksum; see
  :meth:`SessionStore.read_rows`), so a corrupt chunk raises
  :class:`~labsession.errors.SessionError` naming it instead of yielding changed numbers;
- ``copy=False`` yields read-only strided views into that block instead of per-window copies;
- arguments are checked before the first session is read, and every skipped session is logged
  and listed, with the reason, on the iterator (:attr:`WindowIterator.skipped`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from labsession.errors import SessionError
from labsession.recording import _blocks
from labsession.recording._blocks import BlockReader, nearest_streamed
from labsession.recording._records import UNLABELLED, LabelEvent
from labsession.recording._segments import Segment
from labsession.recording._store import SessionStore, open_session_store

__all__ = [
    "SkippedSession",
    "WindowIterator",
    "iter_labeled_windows",
    "seconds_to_samples",
]

log = logging.getLogger(__name__)

_FLOAT64 = np.dtype(np.float64)

T = TypeVar("T")
PathLike = str | os.PathLike[str]


# -- argument checks -----------------------------------------------------------------------------
def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return value


def _check_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out = [Path(p) for p in paths]
    if not out:
        raise ValueError("paths is empty: pass one or more session folders or .session.zip files")
    return out


def seconds_to_samples(seconds: float, fs: float) -> int:
    """Whole samples in ``seconds`` at ``fs`` Hz: ``floor(seconds * fs)`` without float slop.

    Both numbers are taken as the decimals they print as, so 0.29 s at 100 Hz is 29 samples
    (``int(0.29 * 100)`` is 28), as MyoGestic's ``int(window_ms * fs / 1000)`` gives.
    """
    return math.floor(Fraction(repr(float(seconds))) * Fraction(repr(float(fs))))


# -- bookkeeping ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SkippedSession:
    """A session an iterator did not take windows from (or could not open), and why.

    Unpacks as ``path, reason = skipped``, as MyoGestic's ``(path, exception)`` pairs do.
    """

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __iter__(self) -> Iterator[Path | str]:
        return iter((self.path, self.reason))


class WindowIterator(Iterator[T], Generic[T]):
    """The iterator returned by the window functions: windows, plus what was skipped.

    Iterate it once (as any generator). While and after iterating, :attr:`skipped` lists the
    sessions that gave no windows with the reason, :attr:`n_windows` counts the windows yielded
    and :attr:`n_sessions` the sessions they came from; :meth:`summary` says it in one line,
    which is also logged (INFO, WARNING when nothing was yielded) when iteration ends.
    Close it (or use it as a context manager) to release the open session early when you stop
    before the end.
    """

    def __init__(self, produce: Callable[[WindowIterator[T]], Iterator[T]], what: str):
        self.skipped: list[SkippedSession] = []
        self.n_windows = 0
        self.n_sessions = 0
        #: Most bytes of sample and timestamp blocks held at once for one session (blocks read
        #: ahead counted in full): bounded by a few blocks, whatever the sessions' length.
        self.peak_held_bytes = 0
        #: The session being read and its position in ``paths`` (None before the first).
        self.current_path: Path | None = None
        self.current_index: int | None = None
        self._what = what
        # The generator sees this iterator through a weak proxy: no reference cycle, so an
        # iterator dropped mid-loop closes its session and reader threads at once, not whenever
        # the garbage collector gets to the cycle.
        self._gen = produce(weakref.proxy(self))

    def __iter__(self) -> WindowIterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._gen)

    def close(self) -> None:
        """Stop iterating and close the session being read (idempotent)."""
        self._gen.close()

    def __enter__(self) -> WindowIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _held(self, n_bytes: int) -> None:
        self.peak_held_bytes = max(self.peak_held_bytes, n_bytes)

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append(SkippedSession(path, reason))
        log.warning("%s: skipping %s: %s", self._what, path, reason)

    def summary(self) -> str:
        """One line: windows yielded, from how many sessions, and each skipped session's reason."""
        text = f"{self._what}: {self.n_windows} windows from {self.n_sessions} session(s)"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped: " + "; ".join(map(str, self.skipped))
        return text

    def _finish(self) -> None:
        level = logging.WARNING if self.n_windows == 0 else logging.INFO
        log.log(level, "%s", self.summary())


def _labelled_segments(labels: Sequence[LabelEvent], nearest: np.ndarray, n: int) -> list[Segment]:
    """:func:`label_segments` (no pre/post, all classes) from the labels' nearest samples."""
    segments = []
    for i, event in enumerate(labels):
        if event.class_index == UNLABELLED:
            continue
        start = int(nearest[i])
        stop = int(nearest[i + 1]) if i + 1 < len(labels) else n
        if stop > start:
            segments.append(Segment(i, event, start, stop))
    return segments


def _each_store(it: WindowIterator[Any], paths: list[Path]) -> Iterator[SessionStore]:
    """Open each session of ``paths`` in turn for ``it``, closed when the caller moves on (or
    stops); one that cannot be opened is skipped and listed on ``it.skipped``."""
    for index, path in enumerate(paths):
        it.current_path, it.current_index = path, index
        try:
            store = open_session_store(path)
        except (SessionError, OSError) as exc:
            it._skip(path, f"cannot be opened ({exc})")
            continue
        with store:
            yield store


def _survey(paths: list[Path], streams: Sequence[str], *, need_labels: bool, what: str) -> None:
    """Fail early when no session could ever give a window: unknown stream, no labels."""
    seen_streams: set[str] = set()
    readable = with_streams = labelled = 0
    problems = []
    for path in paths:
        try:
            store = open_session_store(path)
        except (SessionError, OSError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        with store:
            readable += 1
            seen_streams.update(store.stream_names)
            if all(s in store.stream_names for s in streams):
                with_streams += 1
                if any(e.class_index != UNLABELLED for e in store.label_track):
                    labelled += 1
    if not readable:
        raise SessionError(
            f"{what}: none of the {len(paths)} session(s) can be opened: " + "; ".join(problems)
        )
    if not with_streams:
        missing = [s for s in streams if s not in seen_streams] or list(streams)
        raise ValueError(
            f"{what}: no session recorded stream(s) {missing}"
            + (" together" if len(streams) > 1 and missing == list(streams) else "")
            + f"; the streams recorded are {sorted(seen_streams)}"
        )
    if need_labels and not labelled:
        raise ValueError(
            f"{what}: no session with stream {streams[0]!r} has a label (other than -1), so "
            f"there is no labelled segment to cut; add labels while recording "
            f"(Session.add_label) or use iter_aligned_windows for unlabelled data"
        )


def _geometry(
    it: WindowIterator[Any],
    store: SessionStore,
    stream: str,
    win_seconds: float,
    hop_seconds: float,
) -> tuple[int, int, int] | None:
    """``(win, hop, n)`` in samples of ``stream``, or None (skip recorded) if unusable."""
    if stream not in store.stream_names:
        it._skip(store.path, f"no stream {stream!r} (streams: {store.stream_names})")
        return None
    fs = store.stream_info(stream).fs
    win = seconds_to_samples(win_seconds, fs)
    if win < 1:
        it._skip(store.path, f"a {win_seconds} s window holds no sample of {stream!r} at {fs} Hz")
        return None
    hop = max(1, seconds_to_samples(hop_seconds, fs))
    n = store.n_samples(stream)
    if n < win:
        it._skip(store.path, f"stream {stream!r} has {n} samples, fewer than one window ({win})")
        return None
    return win, hop, n


# -- labelled windows ----------------------------------------------------------------------------
LabeledWindow = tuple[np.ndarray, np.ndarray, int]


def iter_labeled_windows(
    paths: PathLike | Iterable[PathLike],
    stream_name: str,
    win_seconds: float,
    hop_seconds: float,
    classes: Iterable[int] | None = None,
    *,
    copy: bool = True,
    skip_first: bool = False,
) -> WindowIterator[LabeledWindow]:
    """Yield fixed-length windows of each labelled segment of the sessions.

    A label covers the samples from the one nearest its timestamp to the one nearest the next
    label's timestamp (exclusive); the last label runs to the end of the data. Labels of class
    -1 are skipped. Windows start at the segment's first sample, step by ``hop_seconds`` and
    never cross the segment's end (a segment shorter than one window gives none). The result
    equals MyoGestic's ``iter_labeled_windows(paths, stream_name, 1000 * win_seconds,
    1000 * hop_seconds, classes)``.

    Parameters
    ----------
    paths
        Session folders and/or ``.session.zip`` archives (one path or an iterable), read in
        order.
    stream_name
        The stream to cut, e.g. ``"emg"``.
    win_seconds, hop_seconds
        Window length and step (s, > 0). In samples of each session's stream:
        ``floor(seconds * fs)`` computed exactly (0.29 s at 100 Hz is 29); the hop is at least
        one sample.
    classes
        Keep only these class indices (default: every class).
    copy
        True (default): each window is a new C-contiguous array the caller may keep and
        modify. False: windows and timestamps are read-only views into the block being read
        (no copy; keep only what you need, or copy it).
    skip_first
        Drop the first labelled segment of each session (set-up noise). MyoGestic keeps it;
        :class:`TrainingData` drops it by default.

    Yields
    ------
    window : ndarray
        ``(n_channels, n_samples)`` float32, channels first.
    ts : ndarray
        ``(n_samples,)`` float64 timestamps (s, LSL clock).
    class_index : int
        The segment's class.

    Returns
    -------
    WindowIterator
        Iterate it for the windows; ``.skipped`` and ``.summary()`` tell which sessions gave
        none and why (sessions that cannot be opened, lack the stream or labels, or are shorter
        than one window).

    Raises
    ------
    ValueError
        Before any window: ``win_seconds`` or ``hop_seconds`` not > 0, ``paths`` empty, no
        session recorded ``stream_name``, or none of those has a label.
    SessionError
        No session can be opened, or a chunk of an opened session is corrupt.

    Examples
    --------
    >>> for window, ts, cls in iter_labeled_windows(
    ...     ["sessions/a.session.zip"], "emg", 0.2, 0.05
    ... ):  # doctest: +SKIP
    ...     window.shape  # (n_channels, 400) at 2 kHz
    """
    win_seconds = _check_seconds("win_seconds", win_seconds)
    hop_seconds = _check_seconds("hop_seconds", hop_seconds)
    session_paths = _check_paths(paths)
    wanted = None if classes is None else {int(c) for c in classes}
    what = f"labelled windows of {stream_name!r}"
    _survey(session_paths, [stream_name], need_labels=True, what=what)

    def produce(it: WindowIterator[LabeledWindow]) -> Iterator[LabeledWindow]:
        for store in _each_store(it, session_paths):
            yield from _labeled_session(
                it,
                store,
                stream_name,
                win_seconds,
                hop_seconds,
                wanted,
                copy=copy,
                skip_first=skip_first,
            )
        it._finish()

    return WindowIterator(produce, what)


def _labeled_session(
    it: WindowIterator[LabeledWindow],
    store: SessionStore,
    stream: str,
    win_seconds: float,
    hop_seconds: float,
    wanted: set[int] | None,
    *,
    copy: bool,
    skip_first: bool,
) -> Iterator[LabeledWindow]:
    geometry = _geometry(it, store, stream, win_seconds, hop_seconds)
    if geometry is None:
        return
    win, hop, n = geometry
    labels = store.label_track
    labelled = [i for i, e in enumerate(labels) if e.class_index != UNLABELLED]
    if not labelled:
        it._skip(store.path, "no labels (other than -1)")
        return
    # Only blocks of the timestamps are held too: peak memory does not grow with the session.
    ts_reader = BlockReader(
        store, stream, n, dtype=_FLOAT64, timestamps=True, block_bytes=_blocks.BLOCK_BYTES // 8
    )
    times = np.array([e.timestamp for e in labels], dtype=np.float64)
    # The first timestamp blocks (up to one sample block's bytes) are decoded once, not twice.
    nearest = nearest_streamed(
        store,
        stream,
        n,
        times,
        block=ts_reader.block_rows,
        keep=ts_reader,
        keep_bytes=_blocks.BLOCK_BYTES,
    )
    segments = _labelled_segments(labels, nearest, n)
    if skip_first:
        segments = [s for s in segments if s.index != labelled[0]]
    if wanted is not None:
        segments = [s for s in segments if s.label.class_index in wanted]
    # Copies: blocks transposed once as read, so each window's copy is of contiguous rows.
    # Views: sample-major blocks, each window a transposed (strided) view.
    reader = BlockReader(store, stream, n, prefetch=True, channels_first=copy)
    count = 0
    get, get_ts = reader.get, ts_reader.get
    try:
        for seg in segments:
            cls = seg.label.class_index
            starts = range(seg.start, seg.stop - win + 1, hop)
            if copy:
                for start in starts:
                    yield get(start, start + win).copy(), get_ts(start, start + win).copy(), cls
            else:
                for start in starts:
                    yield get(start, start + win).T, get_ts(start, start + win), cls
            count += len(starts)
    finally:
        reader.close()
        ts_reader.close()
        with contextlib.suppress(ReferenceError):  # the iterator was dropped mid-loop
            it._held(reader.peak_held_bytes + ts_reader.peak_held_bytes)
    if count:
        it.n_windows += count
        it.n_sessions += 1
    else:
        which = "" if wanted is None else f" of classes {sorted(wanted)}"
        it._skip(store.path, f"no labelled segment{which} is as long as one window ({win})")
