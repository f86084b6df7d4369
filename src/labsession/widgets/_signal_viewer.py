"""Live multichannel plot of one stream: min/max per pixel column, painted into a texture."""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from imgui_bundle import imgui, implot

from labsession.widgets._decimate import (
    IncrementalNotch,
    LiveColumns,
    channel_extent,
    paint_columns,
)
from labsession.widgets._instances import widget_instance
from labsession.widgets._texture import PlotTexture

if TYPE_CHECKING:
    from labsession.acquisition import AppContext, Stream

__all__ = ["SignalViewer", "ViewerFrame", "signal_viewer"]

#: Mains frequencies the notch offers (Hz).
MAINS_HZ = (50.0, 60.0)
#: With the automatic scale, a channel's robust half-range fills this fraction of half its slot.
FILL = 0.9
#: The automatic scale changes when the signal's is off by more than this factor, checked
#: every RESCALE_EVERY s (each change repaints the whole image).
RESCALE_FACTOR = 1.25
RESCALE_EVERY = 0.25
#: The status line (and the stream-health snapshot behind it) is refreshed this often (s).
STATUS_EVERY = 0.25
_PLOT_FLAGS = (
    implot.Flags_.no_legend
    | implot.Flags_.no_menus
    | implot.Flags_.no_box_select
    | implot.Flags_.no_mouse_text
    | implot.Flags_.no_inputs
)


@dataclass(frozen=True)
class ViewerFrame:
    """What a :class:`SignalViewer` drew in its latest frame (read by tests and benchmarks).

    Attributes
    ----------
    centre, units_per_channel : ndarray of float64, shape (n_channels,)
        Channel ``k`` is drawn at ``n_channels - 1 - k + zoom * (value - centre_k) /
        units_per_channel_k``: one unit is the distance between two channels.
    seconds_shown
        Seconds of samples in the view (fewer than ``seconds`` while the ring fills).
    columns_updated
        Pixel columns decimated this frame; ``None`` when all were rebuilt from the ring.
    repainted
        True when the whole image was painted again (rebuild, new scale or size).
    labels : tuple of (x, name)
        Label lines drawn: seconds relative to the right edge, class name. A label is placed
        at the sample its timestamp falls on (so a gap in the stream does not shift it);
        labels outside the shown samples are left out.
    notch_hz
        Frequency removed, or ``None`` when the notch is off (or its frequency is at or above
        the stream's Nyquist frequency, where it cannot be applied).
    decimate_s, paint_s
        Seconds spent reading the ring, notching and taking column min/max; and scaling and
        painting the image.
    """

    centre: np.ndarray
    units_per_channel: np.ndarray
    seconds_shown: float
    columns_updated: int | None
    repainted: bool
    labels: tuple[tuple[float, str], ...]
    notch_hz: float | None
    decimate_s: float
    paint_s: float


class SignalViewer:
    """The latest ``seconds`` of a stream, channels stacked, with label lines and a mains notch.

    The plot's pixel columns are fixed on the stream's sample index. Each frame copies from
    the stream's ring buffer only the samples that arrived since the previous frame (it never
    waits on the acquisition thread), takes the min and max of every channel in the columns
    they complete (all channels at once, vectorised) and paints those vertical spans into a
    circular RGBA texture, which ImPlot shows as one image in two pieces. A new scale or size
    repaints the image from the kept columns; a new notch setting rebuilds them from the ring.
    One line per channel would cost two triangles per point, which the software renderer
    (Mesa llvmpipe) cannot draw at a usable rate for 64 channels; see ``benchmarks/README.md``,
    "GUI frame rate", for the figures.

    A rebuild (first frame, new notch setting or plot width) reads what the ring holds,
    ``2 * window_seconds`` of the stream (``Stream(..., window_seconds=...)``); with a ring
    shorter than ``seconds`` the older part of the view stays empty until new samples fill it,
    and the status line says so.

    Parameters
    ----------
    stream_name
        Name of the stream in ``ctx.streams``.
    seconds
        Seconds shown (finite and > 0; else :class:`ValueError`, here and when set later).
    notch, mains_hz
        Remove ``mains_hz`` (50 or 60 Hz) with a causal notch run on the incoming samples
        (:class:`~labsession.widgets._decimate.IncrementalNotch`: filtering the shown window
        every frame costs 7-25 ms at 64 channels).
    autoscale
        Fit the scale to the shown samples (checked 4 times a second, changed when off by
        25 %); when False, the scale is :attr:`units_per_channel`, or the last automatic one
        when that is None.
    per_channel
        One scale per channel (each fills its slot) instead of one for all (relative
        amplitudes stay comparable).
    zoom
        Multiplies the amplitude on screen.

    Attributes
    ----------
    units_per_channel : float, ndarray (n_channels,) or None
        Signal units per channel spacing when ``autoscale`` is False.
    last : ViewerFrame or None
        What the latest frame drew.
    status : str
        The status line ("emg: 64 ch at 2048 Hz, last sample 12 ms ago").

    Notes
    -----
    Item IDs (public, stable), for stream ``emg``: ``###notch_emg`` (checkbox),
    ``###mains_emg`` (50/60 Hz combo), ``###autoscale_emg`` and ``###per_channel_emg``
    (checkboxes), ``###zoom_emg`` (slider), ``##plot_emg`` (the plot).

    Examples
    --------
    >>> from labsession import App, Stream
    >>> from labsession.sources import SyntheticSource
    >>> app = App("demo", class_names=["Rest", "Fist"])
    >>> app.streams(Stream("emg", SyntheticSource(n_channels=64), window_seconds=2.5))
    >>> viewer = SignalViewer("emg", seconds=5.0, notch=True)
    >>> app.ui(viewer.ui)  # doctest: +ELLIPSIS
    <bound method SignalViewer.ui of ...>
    >>> app.run()  # doctest: +SKIP
    """

    def __init__(
        self,
        stream_name: str,
        *,
        seconds: float = 5.0,
        notch: bool = False,
        mains_hz: float = 50.0,
        autoscale: bool = True,
        per_channel: bool = False,
        zoom: float = 1.0,
    ):
        self.seconds = seconds
        self.stream_name = stream_name
        self.notch = notch
        self.mains_hz = float(mains_hz)
        self.autoscale = autoscale
        self.per_channel = per_channel
        self.zoom = float(zoom)
        self.units_per_channel: float | np.ndarray | None = None
        self.last: ViewerFrame | None = None
        self.status = ""
        self._live: LiveColumns | None = None
        self._live_key: tuple = ()
        self._scale: tuple[np.ndarray, np.ndarray] | None = None  # (centre, units) in use
        self._scale_mode: tuple = ()
        self._scale_due = self._status_due = 0.0
        self._painted: tuple = ()
        self._texture = PlotTexture()
        self._colours = np.zeros(0, dtype=np.uint32)

    @property
    def seconds(self) -> float:
        """Seconds shown: finite and > 0 (setting anything else raises :class:`ValueError`)."""
        return self._seconds

    @seconds.setter
    def seconds(self, value: float) -> None:
        self._seconds = _check_seconds(value)

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the min and max of each pixel column, ``(n_channels, n_columns)``.

        Float32 signal units, oldest column first, after the notch when it is on; NaN where
        there is no sample.
        """
        if self._live is None:
            return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
        return self._live.ordered()

    # -- drawing -------------------------------------------------------------------------------
    def ui(self, ctx: AppContext) -> None:
        """Draw the controls, the status line and the plot (which fills the space left)."""
        hooks = getattr(ctx, "close_hooks", None)
        if hooks is not None and self._close not in hooks:  # once per run of the app
            hooks.append(self._close)
        name = self.stream_name
        stream = ctx.streams.get(name)
        if stream is None:
            known = ", ".join(sorted(ctx.streams)) or "none"
            self.status = f"no stream named {name!r} (streams: {known})"
            imgui.text_disabled(self.status)
            return
        self._controls(name)
        info, ring = stream.info, stream.ring
        if not stream.connected or info is None or ring is None:
            self.status = f"waiting for {name}..."
        elif ring.n_written == 0:
            self.status = f"{name}: connected, waiting for the first samples"
        else:
            imgui.text(self.status or name)
            self._plot(ctx, stream)
            return
        imgui.text_disabled(self.status)

    def _close(self) -> None:
        """At the end of an app's run (its imgui context is gone): let go of the texture.

        Only Python references are dropped (the texture's pixels and the context's entry in
        the texture registry); the next frame, in a new context, starts a fresh texture.
        """
        self._texture.forget()
        self._live, self._live_key, self._painted = None, (), ()

    def _controls(self, name: str) -> None:
        _, self.notch = imgui.checkbox(f"Notch###notch_{name}", self.notch)
        imgui.same_line()
        imgui.set_next_item_width(imgui.get_font_size() * 5)
        current = int(np.argmin([abs(self.mains_hz - f) for f in MAINS_HZ]))
        changed, current = imgui.combo(f"##mains###mains_{name}", current, ["50 Hz", "60 Hz"])
        if changed:
            self.mains_hz = MAINS_HZ[current]
        imgui.same_line()
        _, self.autoscale = imgui.checkbox(f"Autoscale###autoscale_{name}", self.autoscale)
        imgui.same_line()
        _, self.per_channel = imgui.checkbox(f"Per channel###per_channel_{name}", self.per_channel)
        imgui.same_line()
        imgui.set_next_item_width(imgui.get_font_size() * 8)
        _, self.zoom = imgui.slider_float(
            f"Zoom###zoom_{name}", self.zoom, 0.1, 20.0, "x%.2f", imgui.SliderFlags_.logarithmic
        )

    def _plot(self, ctx: AppContext, stream: Stream) -> None:
        info = stream.info
        assert info is not None
        n, name = info.n_channels, self.stream_name
        n_view = max(1, round(self.seconds * info.fs))
        x_min, y_range = -n_view / info.fs, (n - 0.4, -0.6)
        step = max(1, int(np.ceil(n * imgui.get_text_line_height() / max(1.0, _avail_y()))))
        # No plot or frame background: on the software renderer each layer over the whole
        # plot costs about as much as the window's own background, which shows through.
        clear = imgui.ImVec4(0.0, 0.0, 0.0, 0.0)
        implot.push_style_color(implot.Col_.plot_bg, clear)
        implot.push_style_color(implot.Col_.frame_bg, clear)
        frame = None
        if implot.begin_plot(f"##plot_{name}", imgui.ImVec2(-1, -1), _PLOT_FLAGS):
            try:
                implot.setup_axis_limits(implot.ImAxis_.x1, x_min, 0.0, implot.Cond_.always)
                implot.setup_axis_limits(implot.ImAxis_.y1, *y_range[::-1], implot.Cond_.always)
                implot.setup_axis_format(implot.ImAxis_.x1, "%g s")
                names = info.channel_names or [str(i) for i in range(n)]
                ticks = range(0, n, step)
                implot.setup_axis_ticks(
                    implot.ImAxis_.y1, [n - 1.0 - i for i in ticks], [names[i] for i in ticks]
                )
                implot.setup_finish()
                size = implot.get_plot_size()
                width, height = round(size.x), round(size.y)
                if width >= 1 and height >= 1:
                    frame = self._frame(ctx, stream, n_view, width, height, y_range)
                if frame is not None:
                    self._draw(frame, x_min, y_range, width, height)
            finally:
                implot.end_plot()
        implot.pop_style_color(2)
        now = time.monotonic()
        if now >= self._status_due:
            self._status_due = now + STATUS_EVERY
            self.status = self._status_line(stream, frame, n_view)

    def _draw(
        self,
        frame: ViewerFrame,
        x_min: float,
        y_range: tuple[float, float],
        width: int,
        height: int,
    ) -> None:
        """The image (the texture is circular: the oldest column at ``g_end % width``), labels."""
        assert self._live is not None
        name, tex, (y_top, y_bottom) = self.stream_name, self._texture, y_range
        p = self._live.g_end % width
        x_split = x_min * p / width
        v = height / tex.height
        tex.draw(f"##old_{name}", (x_min, y_bottom), (x_split, y_top), (p, width), v)
        if p:
            tex.draw(f"##new_{name}", (x_split, y_bottom), (0.0, y_top), (0, p), v)
        if frame.labels:
            xs = np.array([x for x, _ in frame.labels])
            spec = implot.Spec(line_color=imgui.ImVec4(1, 1, 1, 0.8), line_weight=1.5)
            implot.plot_inf_lines(f"##labels_{name}", xs, spec)
            for x, text in frame.labels:
                pad = imgui.ImVec2(imgui.calc_text_size(text).x / 2 + 4, 10)
                implot.plot_text(text, x, y_top, pad)

    # -- one frame's numbers -------------------------------------------------------------------
    def _frame(
        self,
        ctx: AppContext,
        stream: Stream,
        n_view: int,
        width: int,
        height: int,
        y_range: tuple[float, float],
    ) -> ViewerFrame | None:
        info, ring = stream.info, stream.ring
        assert info is not None
        assert ring is not None
        t0 = time.perf_counter()
        notch_hz = self.mains_hz if self.notch and _notch_applies(self.mains_hz, info.fs) else None
        key = (id(ring), info.n_channels, width, n_view, notch_hz)
        if self._live is None or self._live_key != key:
            notch = IncrementalNotch(notch_hz, info.fs) if notch_hz is not None else None
            self._live, self._live_key = LiveColumns(info.n_channels, width, n_view, notch), key
        live = self._live
        updated = live.update(ring)
        if live.last_ts is None:
            return None
        t1 = time.perf_counter()

        centre, units = self._scale_for(live, force=updated is None)
        gain = self.zoom / units
        image, fresh = self._texture.buffer(width, height)
        state = (height, y_range, centre.tobytes(), gain.tobytes())
        repaint = updated is None or fresh or state != self._painted
        if repaint:
            image[:height] = 0
            g_start, g_stop = live.g_end - width, live.g_end
        elif updated.size:
            g_start, g_stop = int(updated[0]), int(updated[-1]) + 1
            image[:height, np.arange(g_start, g_stop) % width] = 0
        if repaint or updated.size:
            paint_columns(
                image,
                live,
                g_start,
                g_stop,
                join=not repaint,
                centre=centre,
                gain=gain,
                y_range=y_range,
                height=height,
                colours=self._channel_colours(info.n_channels),
            )
            self._texture.commit(g_start % width, g_stop - g_start, width, height)
            self._painted = state
        t2 = time.perf_counter()

        self.last = ViewerFrame(
            centre=centre,
            units_per_channel=units,
            seconds_shown=live.n_received / info.fs,
            columns_updated=None if updated is None else int(updated.size),
            repainted=repaint,
            labels=self._labels(ctx, live, info.fs),
            notch_hz=notch_hz,
            decimate_s=t1 - t0,
            paint_s=t2 - t1,
        )
        return self.last

    def _scale_for(self, live: LiveColumns, *, force: bool) -> tuple[np.ndarray, np.ndarray]:
        """Centre and units per channel spacing in use; they follow the signal with hysteresis."""
        n = live.n_channels
        held = self._scale if self._scale is not None and self._scale[0].shape[0] == n else None
        mode, now = (self.autoscale, self.per_channel), time.monotonic()
        if held is None or force or mode != self._scale_mode or now >= self._scale_due:
            centre, half_range = channel_extent(live.lo, live.hi)
            spread = half_range if self.per_channel else np.full(n, half_range.max())
            units = np.where(spread > 0, 2.0 * spread / FILL, 1.0)
            if held is not None:
                off = np.abs(np.log(units / held[1])) > np.log(RESCALE_FACTOR)
                if not self.autoscale or not (force or mode != self._scale_mode or off.any()):
                    units = held[1]
                if not force and not (np.abs(centre - held[0]) > 0.05 * units).any():
                    centre = held[0]
            self._scale, self._scale_mode = (centre, units), mode
            self._scale_due = now + RESCALE_EVERY
        centre, units = self._scale
        if not self.autoscale and self.units_per_channel is not None:
            manual = np.broadcast_to(np.asarray(self.units_per_channel, dtype=float), n)
            units = np.where(manual > 0, manual, 1.0)
        return centre, units

    def _labels(
        self, ctx: AppContext, live: LiveColumns, fs: float
    ) -> tuple[tuple[float, str], ...]:
        session = ctx.session  # read once: the recording may stop meanwhile
        if session is None:
            return ()
        events = list(session.label_track)
        xs = live.place(np.array([e.timestamp for e in events], dtype=np.float64), fs)
        return tuple(
            (float(x), _class_name(e.class_index, ctx.class_names))
            for x, e in zip(xs, events, strict=True)
            if np.isfinite(x)
        )

    def _channel_colours(self, n_channels: int) -> np.ndarray:
        if self._colours.shape[0] != n_channels:
            palette = np.array(
                [_rgba(implot.get_colormap_color(i)) for i in range(implot.get_colormap_size())],
                dtype=np.uint32,
            )
            self._colours = palette[np.arange(n_channels) % palette.shape[0]]
        return self._colours

    def _status_line(self, stream: Stream, frame: ViewerFrame | None, n_view: int) -> str:
        info, ring = stream.info, stream.ring
        assert info is not None
        age = stream.health.snapshot().last_sample_age
        if age is None:
            when = "no sample yet"
        else:
            ago = f"{age * 1000:.0f} ms" if age < 1 else f"{age:.1f} s"
            when = f"last sample {ago} ago"
        text = f"{self.stream_name}: {info.n_channels} ch at {info.fs:g} Hz, {when}"
        span = n_view / info.fs
        if ring is not None and ring.capacity < n_view:
            shown = frame.seconds_shown if frame is not None else 0.0
            text += (
                f"; showing {shown:.1f} of {span:g} s: the stream keeps "
                f"{ring.capacity / info.fs:g} s (Stream(window_seconds={span / 2:g}) keeps all)"
            )
        if self.notch and not _notch_applies(self.mains_hz, info.fs):
            text += f"; no notch: {self.mains_hz:g} Hz is at or above Nyquist ({info.fs / 2:g} Hz)"
        elif self.notch:
            text += f"; {self.mains_hz:g} Hz notch"
        return text


def signal_viewer(ctx: AppContext, stream_name: str, *, seconds: float = 5.0) -> SignalViewer:
    """Draw the live plot of ``stream_name`` (function form of :class:`SignalViewer`).

    One :class:`SignalViewer` is kept per place in the frame (its toggles survive between
    frames); it is returned, so a caller can read or set its state. ``seconds`` must be finite
    and > 0: anything else raises :class:`ValueError` at the call, before anything is drawn
    (as the class form does at construction).
    """
    seconds = _check_seconds(seconds)
    viewer = widget_instance(
        "signal_viewer", stream_name, lambda: SignalViewer(stream_name, seconds=seconds), ctx
    )
    viewer.seconds = seconds
    viewer.ui(ctx)
    return viewer


def _check_seconds(value: float) -> float:
    seconds = float(value) if isinstance(value, numbers.Real) else math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be > 0 and finite, got {value!r}")
    return seconds


def _notch_applies(freq: float, fs: float) -> bool:
    return 0 < freq < fs / 2


def _avail_y() -> float:
    return imgui.get_content_region_avail().y


def _class_name(index: int, names: list[str]) -> str:
    if index == -1:
        return "(pause)"
    return names[index] if 0 <= index < len(names) else f"#{index}"


def _rgba(colour: Any) -> int:
    """Pack an ``ImVec4`` colour into ImGui's RGBA32 pixel (R in the low byte)."""
    r, g, b, a = (
        round(min(max(c, 0.0), 1.0) * 255) for c in (colour.x, colour.y, colour.z, colour.w)
    )
    return r | g << 8 | b << 16 | a << 24
