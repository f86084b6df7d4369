"""Aligned windows: windows of a primary stream with the matching values of other streams.

MyoGestic's ``iter_aligned_windows`` (``window_ms``/``hop_ms``/``n_alignment_samples`` are
``1000 * win_seconds``, ``1000 * hop_seconds`` and ``align_window_samples`` here): the same
windows and values. Samples are read chunk-wise as the labelled windows are
(:mod:`labsession.recording._windows`); the timestamps of the streams are kept (8 bytes per
sample). A session that lacks an aligned stream gives no window and is listed, with the reason,
on the iterator; when no session has it the iterator yields nothing, as MyoGestic's does.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from labsession.recording._blocks import BlockReader
from labsession.recording._segments import nearest_index
from labsession.recording._store import SessionStore
from labsession.recording._windows import (
    PathLike,
    WindowIterator,
    _check_paths,
    _check_seconds,
    _each_store,
    _geometry,
    _survey,
)

__all__ = ["AlignedWindow", "iter_aligned_windows"]

_FLOAT64 = np.dtype(np.float64)

AlignedWindow = tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]


def iter_aligned_windows(
    paths: PathLike | Iterable[PathLike],
    primary_stream: str,
    aligned_streams: Sequence[str],
    win_seconds: float,
    hop_seconds: float,
    align_window_samples: int = 1,
    *,
    copy: bool = True,
) -> WindowIterator[AlignedWindow]:
    """Yield windows of a primary stream with the matching values of other streams.

    Windows run over the whole primary stream (labels are ignored), from its first sample in
    steps of ``hop_seconds``. For each, every aligned stream contributes the mean of
    ``align_window_samples`` samples around its sample nearest the window's middle timestamp
    (``ts[win // 2]``): from ``align_window_samples // 2`` samples before it to the rest after
    it, clipped at the ends of the stream. The result equals MyoGestic's
    ``iter_aligned_windows(paths, primary_stream, aligned_streams, 1000 * win_seconds,
    1000 * hop_seconds, align_window_samples)``.

    Parameters
    ----------
    paths
        Session folders and/or ``.session.zip`` archives, read in order.
    primary_stream
        The stream to cut into windows, e.g. ``"emg"``.
    aligned_streams
        Streams to read a target from at each window, e.g. ``["glove"]``. A session lacking
        any of them is skipped (listed on :attr:`WindowIterator.skipped`); when no session
        has them all, the iterator yields nothing, as MyoGestic's does. To see beforehand
        which sessions have a stream, use :func:`split_sessions_by_stream`.
    win_seconds, hop_seconds
        Window length and step (s, > 0), as in :func:`iter_labeled_windows`.
    align_window_samples
        Samples of each aligned stream averaged per window (>= 1).
    copy
        As in :func:`iter_labeled_windows`.

    Yields
    ------
    window : ndarray
        ``(n_channels, n_samples)`` float32 primary window.
    aligned : dict of str to ndarray
        ``{name: (n_channels_of_name,) float32}`` averaged aligned values.
    ts : ndarray
        ``(n_samples,)`` float64 timestamps of the window (s).

    Raises
    ------
    ValueError
        ``win_seconds``/``hop_seconds`` not > 0, ``align_window_samples`` < 1, ``paths`` or
        ``aligned_streams`` empty, or no session recorded ``primary_stream`` (a misspelt
        name). Missing aligned streams never raise.
    SessionError
        No session can be opened, or a chunk of an opened session is corrupt (the message
        names the chunk); windows before it were yielded unchanged.
    """
    win_seconds = _check_seconds("win_seconds", win_seconds)
    hop_seconds = _check_seconds("hop_seconds", hop_seconds)
    if (
        isinstance(align_window_samples, bool)
        or not isinstance(align_window_samples, numbers.Integral)
        or align_window_samples < 1
    ):
        raise ValueError(
            f"align_window_samples must be an integer >= 1, got {align_window_samples!r}"
        )
    if isinstance(aligned_streams, str):
        aligned_streams = [aligned_streams]
    aligned = list(aligned_streams)
    if not aligned:
        raise ValueError("aligned_streams is empty: name at least one stream to align")
    session_paths = _check_paths(paths)
    what = f"windows of {primary_stream!r} aligned with {aligned}"
    # Only the primary stream must exist somewhere; aligned streams are optional per session.
    _survey(session_paths, [primary_stream], need_labels=False, what=what)
    n_align = int(align_window_samples)

    def produce(it: WindowIterator[AlignedWindow]) -> Iterator[AlignedWindow]:
        for store in _each_store(it, session_paths):
            yield from _aligned_session(
                it, store, primary_stream, aligned, win_seconds, hop_seconds, n_align, copy
            )
        it._finish()

    return WindowIterator(produce, what)


def _aligned_session(
    it: WindowIterator[AlignedWindow],
    store: SessionStore,
    primary: str,
    aligned: list[str],
    win_seconds: float,
    hop_seconds: float,
    n_align: int,
    copy: bool,
) -> Iterator[AlignedWindow]:
    missing = [s for s in aligned if s not in store.stream_names]
    if missing:
        it._skip(store.path, f"no aligned stream(s) {missing} (streams: {store.stream_names})")
        return
    geometry = _geometry(it, store, primary, win_seconds, hop_seconds)
    if geometry is None:
        return
    win, hop, n = geometry
    sizes = {name: store.n_samples(name) for name in aligned}
    if empty := [name for name, size in sizes.items() if size == 0]:
        it._skip(store.path, f"aligned stream(s) {empty} have no samples")
        return
    ts = store.read_rows(primary, 0, n, timestamps=True, dtype=_FLOAT64)
    ts.flags.writeable = False  # shared by the views handed out with copy=False
    starts = np.arange(0, n - win + 1, hop)
    mids = ts[starts + win // 2]
    n_left, n_right = n_align // 2, n_align - n_align // 2
    spans = {}
    readers = {}
    for name in aligned:
        aligned_ts = store.read_rows(name, 0, sizes[name], timestamps=True, dtype=_FLOAT64)
        nearest = nearest_index(aligned_ts, mids)
        spans[name] = (np.maximum(nearest - n_left, 0), np.minimum(nearest + n_right, sizes[name]))
        readers[name] = BlockReader(store, name, sizes[name])
    reader = BlockReader(store, primary, n, prefetch=True, channels_first=copy)
    try:
        for k, start in enumerate(starts.tolist()):
            stop = start + win
            values = {}
            for name in aligned:
                lo, hi = spans[name]
                values[name] = np.mean(readers[name].get(int(lo[k]), int(hi[k])), axis=0)
            window = reader.get(start, stop) if copy else reader.get(start, stop).T
            if copy:
                yield window.copy(), values, ts[start:stop].copy()
            else:
                yield window, values, ts[start:stop]
    finally:
        reader.close()
        with contextlib.suppress(ReferenceError):  # the iterator was dropped mid-loop
            it._held(reader.peak_held_bytes + sum(r.peak_held_bytes for r in readers.values()))
    it.n_windows += len(starts)
    it.n_sessions += 1
