"""A picture of a recorded session: stacked channel traces, labels and gaps (``plot_session``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from labsession.recording._plot_data import Traces, read_traces, select_channels
from labsession.recording._reader import SessionReader
from labsession.recording._records import UNLABELLED

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_session"]

#: Figure margins in pixels (left: channel names; bottom: time axis; top: title).
_LEFT, _RIGHT, _TOP, _BOTTOM = 90, 20, 36, 48
#: Height in pixels of one channel's lane, and the least height of a figure.
_LANE_PX, _MIN_HEIGHT_PX = 60, 300
#: Half the height of a lane a trace may take (1.0 would touch the neighbours' centre lines).
_HALF_LANE = 0.45
_DPI = 100
_GAP_COLOR = "tab:red"


def plot_session(
    session: str | os.PathLike[str] | SessionReader,
    *,
    stream: str | None = None,
    channels: slice | Sequence[int] | str | None = None,
    start: float | None = None,
    end: float | None = None,
    ax: Axes | None = None,
    width_px: int = 1600,
) -> Figure:
    """Plot a recorded session: one trace per channel, label segments and gaps.

    Channels are stacked top to bottom, each centred and scaled by the 1st-99th percentile
    range of what is drawn (robust to a few artefacts; excursions beyond a lane are clipped).
    When the window holds more samples than the axes have pixel columns, each column shows the
    minimum-maximum envelope of its samples, computed from blocks read with the verified reader
    (memory bounded by one block, whatever the session's length); otherwise the samples are
    drawn as lines. Label segments (from a label to the next one, or to the last sample) are
    shaded, one light colour per class, and named at their start; unlabelled (-1) segments are
    not shaded. The gaps of the stream's integrity record are hatched red. Without a record in
    ``meta.json`` (MyoGestic's and older sessions), gaps are found in the window's timestamps.

    Timestamps that go back (a device whose clock started over mid-recording, stored as given)
    are drawn as they are: time 0 is the earliest stamp, the axis runs to the latest, each
    sample (and label) sits at its own stamp, and the axis label says how often the stamps go
    back. ``start`` and ``end`` then count from the earliest stamp.

    Parameters
    ----------
    session
        A session folder or ``.session.zip``, or an open :class:`SessionStore` (left open).
    stream
        The stream to plot (default: the session's first).
    channels
        A slice, a sequence of channel indices, or a string such as ``"0:8"`` or ``"0,2,5"``
        (ranges end-exclusive). Default: the first channels, up to 8.
    start, end
        Window in seconds from the stream's first sample (default: all of it; ``end`` past the
        last sample is clipped).
    ax
        Axes to draw into (its figure is returned); default a new figure ``width_px`` wide.
    width_px
        Width in pixels of a new figure (at 100 dpi). The envelope has one column per pixel of
        the axes' width.

    Returns
    -------
    matplotlib.figure.Figure
        Made without pyplot (nothing is shown); save it with ``fig.savefig("plot.png")``. Time
        axis in seconds; each channel's trace is one artist in ``ax.lines`` (samples) or
        ``ax.collections`` (envelope); label names are ``ax.texts``.

    Raises
    ------
    SessionError
        No session at ``session``, a corrupt chunk, or a stream without samples.
    KeyError
        ``stream`` is not in the session (the message lists the streams).
    ValueError
        Bad ``channels``, ``width_px`` or time window (naming the value and what is allowed).

    Examples
    --------
    >>> fig = plot_session("a.session.zip", channels="0:4", start=10, end=40)  # doctest: +SKIP
    >>> fig.savefig("a.png")  # doctest: +SKIP
    """
    from labsession.recording._store import open_session_store

    if int(width_px) != width_px or not 200 <= width_px <= 20000:
        raise ValueError(f"width_px must be an integer in [200, 20000], got {width_px!r}")
    if start is not None and not start >= 0:
        raise ValueError(f"start must be >= 0 s, got {start!r}")
    if start is not None and end is not None and not end > start:
        raise ValueError(f"end must be after start, got start={start!r} s, end={end!r} s")
    if isinstance(session, SessionReader):
        return _plot(session, stream, channels, start, end, ax, int(width_px))
    with open_session_store(session) as store:
        return _plot(store, stream, channels, start, end, ax, int(width_px))


def _plot(
    store: SessionReader,
    stream: str | None,
    channels: slice | Sequence[int] | str | None,
    start: float | None,
    end: float | None,
    ax: Axes | None,
    width_px: int,
) -> Figure:
    from matplotlib.figure import Figure

    names = store.stream_names
    if not names:
        from labsession.errors import SessionError

        raise SessionError(f"{store.path}: the session has no streams to plot")
    name = names[0] if stream is None else stream
    info = store.stream_info(name)  # KeyError listing the streams
    chosen = select_channels(
        channels, info.n_channels, where=f"stream {name!r} of {Path(store.path).name}"
    )
    if ax is None:
        height_px = max(_MIN_HEIGHT_PX, _TOP + _BOTTOM + _LANE_PX * len(chosen))
        fig = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
        fig.subplots_adjust(
            left=_LEFT / width_px,
            right=1 - _RIGHT / width_px,
            top=1 - _TOP / height_px,
            bottom=_BOTTOM / height_px,
        )
        ax = fig.add_subplot()
    fig = ax.get_figure(root=True)
    columns = max(1, int(ax.get_position().width * fig.get_size_inches()[0] * fig.dpi))
    traces = read_traces(store, name, chosen, start=start, end=end, columns=columns)
    _draw_traces(ax, traces, chosen, info.channel_names)
    _draw_labels(ax, store, traces)
    _draw_gaps(ax, traces)
    ax.set_xlim(traces.start, max(traces.end, traces.start + 1.0 / info.fs))
    if traces.n_back:
        ax.set_xlabel(
            f"time (s) from the stream's earliest timestamp: its timestamps go back "
            f"{traces.n_back:,} time(s) (a clock reset?), each sample is drawn at its own"
        )
    else:
        ax.set_xlabel("time (s) from the stream's first sample")
    shown = _describe(chosen)
    ax.set_title(
        f"{Path(store.path).name}: {name} ({info.fs:g} Hz, channels {shown}, "
        f"{traces.rows:,} samples{', min/max per pixel' if traces.envelope else ''})",
        fontsize=10,
        loc="left",
    )
    return fig


def _describe(chosen: list[int]) -> str:
    if len(chosen) > 1 and chosen == list(range(chosen[0], chosen[-1] + 1)):
        return f"{chosen[0]}-{chosen[-1]}"
    return ", ".join(str(c) for c in chosen)


def _scaled(values: np.ndarray, center: float, span: float, offset: float) -> np.ndarray:
    return offset + np.clip((values - center) / span, -1.0, 1.0) * _HALF_LANE


def _draw_traces(
    ax: Axes, traces: Traces, chosen: list[int], channel_names: tuple[str, ...] | None
) -> None:
    n = len(chosen)
    offsets = np.arange(n - 1, -1, -1, dtype=np.float64)
    for k, offset in enumerate(offsets):
        low, high = traces.low[k], traces.high[k]
        finite_low, finite_high = low[np.isfinite(low)], high[np.isfinite(high)]
        if finite_low.size:
            bottom, top = np.percentile(finite_low, 1.0), np.percentile(finite_high, 99.0)
        else:
            bottom = top = 0.0
        center = (bottom + top) / 2
        span = (top - bottom) / 2 if top > bottom else 1.0
        color = f"C{k % 10}"
        if traces.envelope:
            ax.fill_between(
                traces.t,
                _scaled(low, center, span, offset),
                _scaled(high, center, span, offset),
                color=color,
                linewidth=0.4,
                edgecolor=color,
                zorder=2,
            )
        else:
            ax.plot(traces.t, _scaled(low, center, span, offset), color=color, lw=0.8, zorder=2)
    labels = [
        channel_names[c] if channel_names and c < len(channel_names) else f"ch {c}" for c in chosen
    ]
    ax.set_yticks(offsets, labels)
    ax.set_ylim(-0.6, n - 0.25)  # room above the top lane for the label names
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _draw_labels(ax: Axes, store: SessionReader, traces: Traces) -> None:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    track = store.label_track
    for i, label in enumerate(track):
        if label.class_index == UNLABELLED:
            continue
        seg_start = label.timestamp - traces.t0
        seg_end = track[i + 1].timestamp - traces.t0 if i + 1 < len(track) else traces.duration
        lo, hi = max(seg_start, traces.start), min(seg_end, traces.end)
        if hi <= lo:
            continue
        color = palette(label.class_index % palette.N)
        ax.axvspan(lo, hi, facecolor=color, alpha=0.15, linewidth=0, zorder=0)
        ax.annotate(
            store.class_name(label.class_index),
            xy=(lo, 1.0),
            xycoords=ax.get_xaxis_transform(),
            xytext=(2, -2),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=9,
            color=palette(label.class_index % palette.N, alpha=1.0),
            annotation_clip=True,
            zorder=3,
        )


def _draw_gaps(ax: Axes, traces: Traces) -> None:
    from matplotlib.patches import Patch

    record = traces.integrity
    shown = 0
    for a, b in record.gaps:
        lo, hi = max(a - traces.t0, traces.start), min(b - traces.t0, traces.end)
        if hi <= lo:
            continue
        ax.axvspan(
            lo,
            hi,
            facecolor=(1.0, 0.0, 0.0, 0.08),
            edgecolor=_GAP_COLOR,
            hatch="////",
            linewidth=0.0,
            zorder=1,
        )
        shown += 1
    if not shown:
        return
    kept = "" if record.n_gaps <= len(record.gaps) else f"; {record.n_gaps} in all, ends kept"
    source = " (from the timestamps)" if traces.computed else ""
    handle = Patch(
        facecolor=(1.0, 0.0, 0.0, 0.08),
        edgecolor=_GAP_COLOR,
        hatch="////",
        linewidth=0.0,
        label=f"gap in the timestamps{source} ({shown} shown{kept})",
    )
    # Above the axes, right of the title: never over a trace or a label name.
    ax.legend(
        handles=[handle],
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
        borderaxespad=0.2,
    )
