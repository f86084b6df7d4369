"""Record, Stop and one button per class: label a recording as the subject changes gesture."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from imgui_bundle import imgui

from labsession.core.clock import local_clock
from labsession.core.paths import tree_size
from labsession.core.units import format_bytes
from labsession.widgets._instances import widget_instance
from labsession.widgets._tasks import TaskQueue

if TYPE_CHECKING:
    from labsession.acquisition import AppContext

__all__ = ["RecordingControls", "cue_class", "recording_controls"]

log = logging.getLogger(__name__)

#: App states with a recording to stop ("error": its writes failed; Stop keeps the folder).
_RECORDING_STATES = ("recording", "error")

#: Longest wait (s), when the app's loop ends, for the actions clicked before.
CLOSE_TIMEOUT_S = 60.0
#: Seconds between two refreshes of the size on disk shown while recording.
SIZE_REFRESH_S = 1.0
_ACTIVE = imgui.ImVec4(0.15, 0.55, 0.25, 1.0)
_PICKED = imgui.ImVec4(0.25, 0.40, 0.65, 1.0)
_RECORDING = imgui.ImVec4(0.85, 0.20, 0.20, 1.0)


def cue_class(step: int, n_classes: int) -> int:
    """Class cued at ``step`` of cue mode: rest (0), 1, rest, 2, ..., rest, n-1, rest, 1, ...

    The same cycle as :func:`labsession.acquisition.cue_schedule`, without an end.
    """
    return 0 if step % 2 == 0 else 1 + (step // 2) % (n_classes - 1)


def class_name_list(class_names: Sequence[object]) -> list[str]:
    """``class_names`` as a list of text, one name per class; a plain string is refused (it
    would be one class per letter)."""
    if isinstance(class_names, str | bytes):
        raise ValueError(
            f"class_names must be a list of names, got the string {class_names!r}: "
            f"give a list, e.g. {class_names.split(',') if isinstance(class_names, str) else []!r}"
        )
    return [str(name) for name in class_names]


class RecordingControls:
    """Record / Stop buttons, one button per class, cue mode; state per instance.

    While idle a class button picks the class that Record labels first. While recording a
    class button (or key 1-9) adds a label at the moment of the click
    (``ctx.session.add_label(i, timestamp)``), then calls ``on_gesture(i)``. Cue mode cycles
    through the classes (rest, class 1, rest, class 2, ...) every ``cue_seconds``, labelling
    each cue at its scheduled time, with a countdown to the next one.

    The frame never waits: ``on_record``, ``on_stop``, labels and ``on_gesture`` run in click order
    on one background thread, and the panel shows "starting..." / "stopping..." meanwhile.
    A second Record while recording, or Stop while idle, does nothing and says so in
    ``ctx.status_message``; so does an action that fails (the error is also logged).

    Item IDs (public, stable): ``###record``, ``###stop``, ``###class_<i>`` (i = class index),
    ``###cue_mode``, ``###cue_seconds``.

    Parameters
    ----------
    class_names
        The classes, index 0 first (cue mode takes class 0 as rest).
    on_record
        Starts the recording, e.g. ``lambda: app.start_recording("sessions")``.
    on_stop
        Stops it, e.g. ``app.stop_recording`` (which packs on its own thread).
    on_gesture
        Called with the class index after each label (e.g. to switch a synthetic source).
    cue_seconds
        Length of each cue in cue mode (s).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        *,
        on_record: Callable[[], Any],
        on_stop: Callable[[], Any],
        on_gesture: Callable[[int], Any] | None = None,
        cue_seconds: float = 3.0,
    ):
        self.class_names = class_name_list(class_names)
        self.on_record = on_record
        self.on_stop = on_stop
        self.on_gesture = on_gesture
        self.cue_seconds = float(cue_seconds)
        self.cue_mode = False
        #: The class labelled last (while recording) or picked for Record (while idle).
        self.active_class: int | None = None
        self._phase = "idle"  # idle | starting | recording | stopping
        self._ctx: AppContext | None = None
        self._tasks = TaskQueue("recording-controls")
        self._sizer = TaskQueue("recording-size")
        self._session: Any = None
        self._started = 0.0
        self._sample_base: dict[str, int] = {}
        self._size = 0
        self._size_due = 0.0
        self._label_counts: Counter[int] = Counter()
        self._cue_step = 0
        self._cue_next: float | None = None
        self._hooked: AppContext | None = None

    # -- actions (also callable from code and tests) -------------------------------------------
    @property
    def state(self) -> str:
        """``"idle"``, ``"starting"``, ``"recording"`` or ``"stopping"``."""
        return self._phase

    @property
    def recording(self) -> bool:
        """True from the Record click until the Stop click."""
        return self._phase in ("starting", "recording")

    def record(self, ctx: AppContext) -> bool:
        """Start recording (what ``###record`` does); False, with a status message, if it can't."""
        if self.recording or self._phase == "stopping" or ctx.state in _RECORDING_STATES:
            ctx.status_message = "already recording: Record ignored"
            return False
        self._ctx, self._phase = ctx, "starting"
        first = self.active_class
        if self.cue_mode and len(self.class_names) >= 2:
            first = 0
        self._tasks.submit(self._start, ctx, first, local_clock(), on_error=self._failed("Record"))
        return True

    def stop(self, ctx: AppContext) -> bool:
        """Stop recording (what ``###stop`` does); False, with a status message, while idle."""
        if not self.recording and ctx.state not in _RECORDING_STATES:
            ctx.status_message = "not recording: Stop ignored"
            return False
        self._ctx, self._phase, self._cue_next = ctx, "stopping", None
        self._tasks.submit(self._stop, ctx, on_error=self._failed("Stop"))
        return True

    def label(self, ctx: AppContext, class_index: int, timestamp: float | None = None) -> None:
        """Label from ``timestamp`` (default: now) on as ``class_index``; while idle, pick it."""
        if not 0 <= class_index < len(self.class_names):
            ctx.status_message = f"no class {class_index + 1}: there are {len(self.class_names)}"
            return
        self.active_class = class_index
        if not self.recording:
            return
        stamp = local_clock() if timestamp is None else timestamp
        self._tasks.submit(self._add_label, ctx, class_index, stamp, on_error=self._failed("label"))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued action has run (tests, shutdown); False on timeout."""
        return self._tasks.wait(timeout)

    def _finish_queued(self) -> None:
        """Close hook: run what was clicked before the window closed (the app then stops and
        packs the recording), so a Record or label click is never left behind."""
        self._cue_next = None
        if not self._tasks.wait(CLOSE_TIMEOUT_S):
            log.error("recording controls: actions still running %g s after close", CLOSE_TIMEOUT_S)

    # -- background work -----------------------------------------------------------------------
    def _start(self, ctx: AppContext, first: int | None, clicked: float) -> None:
        # The first label carries the click's time, so labels clicked while the session was
        # being created (queued behind this) come after it.
        self.on_record()
        session = ctx.session
        self._begin(ctx, session)
        if first is not None and session is not None:
            self._add_label(ctx, first, clicked)
        if self.cue_mode and len(self.class_names) >= 2:
            self._cue_step, self._cue_next = 0, clicked + self.cue_seconds
        self._phase = "recording"  # last: the frame loop reads the cue state from here on

    def _begin(self, ctx: AppContext, session: Any) -> None:
        self._session, self._started = session, time.monotonic()
        # Only the streams the session records count (one not connected at Record is not).
        recorded = set(getattr(session, "stream_names", ctx.streams))
        self._sample_base = {
            name: s.n_samples for name, s in ctx.streams.items() if name in recorded
        }
        self._label_counts, self._size, self._size_due = Counter(), 0, 0.0

    def _stop(self, ctx: AppContext) -> None:
        try:
            self.on_stop()
        finally:
            self._phase = "idle"

    def _add_label(self, ctx: AppContext, class_index: int, timestamp: float) -> None:
        session = ctx.session
        if session is None:
            raise RuntimeError(f"label {self.class_names[class_index]!r} dropped: not recording")
        session.add_label(class_index, timestamp)
        self._label_counts = Counter(e.class_index for e in session.label_track)
        if self.on_gesture is not None:
            self.on_gesture(class_index)

    def _failed(self, action: str) -> Callable[[BaseException], None]:
        def report(exc: BaseException) -> None:
            ctx = self._ctx
            if ctx is not None:
                ctx.status_message = f"{action} failed: {type(exc).__name__}: {exc}"
            if action == "Record":
                self._phase = "idle"
            self._cue_next = None

        return report

    # -- drawing -------------------------------------------------------------------------------
    def ui(self, ctx: AppContext) -> None:
        """Draw the controls for ``ctx`` (an :class:`~labsession.acquisition.AppContext`)."""
        self._ctx = ctx
        if self._hooked is not ctx:
            self._hooked = ctx
            ctx.close_hooks.append(self._finish_queued)
        self._follow_app(ctx)
        self._step_cues(ctx)
        self._draw_buttons(ctx)
        self._draw_classes(ctx)
        self._handle_keys(ctx)
        self._draw_cues()
        self._draw_status(ctx)

    def _follow_app(self, ctx: AppContext) -> None:
        """Track recordings started or stopped elsewhere (a hook, a script, the CLI)."""
        if self._phase == "idle" and ctx.state in _RECORDING_STATES and not self._tasks.busy:
            self._phase = "recording"
            self._begin(ctx, ctx.session)
        elif (
            self._phase == "recording"
            and ctx.state not in _RECORDING_STATES
            and not self._tasks.busy
        ):
            self._phase, self._cue_next = "idle", None

    def _step_cues(self, ctx: AppContext) -> None:
        if not self.cue_mode or len(self.class_names) < 2:
            self._cue_next = None
            return
        if self._phase != "recording":
            return
        now = local_clock()
        if self._cue_next is None:  # cue mode switched on while recording: rest from now
            self._cue_step, self._cue_next = 0, now + self.cue_seconds
            self.label(ctx, 0, now)
            return
        while now >= self._cue_next:  # a stalled frame catches up, each cue at its own time
            self._cue_step += 1
            self.label(ctx, cue_class(self._cue_step, len(self.class_names)), self._cue_next)
            self._cue_next += self.cue_seconds

    def _draw_buttons(self, ctx: AppContext) -> None:
        busy = self._phase in ("starting", "stopping")
        imgui.begin_disabled(self.recording or busy)
        if imgui.button("Record###record"):
            self.record(ctx)
        imgui.end_disabled()
        imgui.same_line()
        imgui.begin_disabled(not self.recording or busy)
        if imgui.button("Stop###stop"):
            self.stop(ctx)
        imgui.end_disabled()
        imgui.same_line()
        if self._phase == "recording":
            imgui.text_colored(_RECORDING, "recording")
        else:
            imgui.text(
                {"starting": "starting...", "stopping": "stopping..."}.get(self._phase, "idle")
            )

    def _draw_classes(self, ctx: AppContext) -> None:
        for index, name in enumerate(self.class_names):
            if index:
                imgui.same_line()
            highlight = index == self.active_class
            if highlight:
                imgui.push_style_color(imgui.Col_.button, _ACTIVE if self.recording else _PICKED)
            key = f" ({index + 1})" if index < 9 else ""
            if imgui.button(f"{name}{key}###class_{index}"):
                self.label(ctx, index)
            if highlight:
                imgui.pop_style_color()
            if imgui.is_item_hovered():
                verb = "label from now on as" if self.recording else "start with"
                imgui.set_tooltip(f"{verb} {name!r}" + (f" (key {index + 1})" if key else ""))

    def _handle_keys(self, ctx: AppContext) -> None:
        if imgui.get_io().want_text_input:
            return
        for index in range(min(9, len(self.class_names))):
            if imgui.is_key_pressed(getattr(imgui.Key, f"_{index + 1}"), repeat=False):
                self.label(ctx, index)

    def _draw_cues(self) -> None:
        _, self.cue_mode = imgui.checkbox("Cue mode###cue_mode", self.cue_mode)
        if imgui.is_item_hovered():
            imgui.set_tooltip("cycle rest, class 1, rest, class 2, ... labelling each cue")
        if self.cue_mode:
            imgui.same_line()
            imgui.set_next_item_width(120)
            changed, seconds = imgui.slider_float(
                "s per cue###cue_seconds", self.cue_seconds, 0.5, 10.0, "%.1f"
            )
            if changed:
                self.cue_seconds = max(0.5, float(seconds))
        if self._cue_next is not None and self._phase == "recording":
            now_class = cue_class(self._cue_step, len(self.class_names))
            next_class = cue_class(self._cue_step + 1, len(self.class_names))
            left = max(0.0, self._cue_next - local_clock())
            imgui.text_colored(_ACTIVE, f"Now: {self.class_names[now_class]}")
            imgui.same_line()
            imgui.text(f"next: {self.class_names[next_class]} in {left:.1f} s")
            imgui.progress_bar(1.0 - left / self.cue_seconds, imgui.ImVec2(-1, 0), "")

    def _draw_status(self, ctx: AppContext) -> None:
        if self._phase == "recording" and self._session is not None:
            elapsed = time.monotonic() - self._started
            samples = sum(
                stream.n_samples - self._sample_base[name]
                for name, stream in ctx.streams.items()
                if name in self._sample_base
            )
            self._refresh_size()
            minutes, seconds = divmod(round(elapsed, 1), 60)  # 59.96 s is 01:00.0, not 00:60.0
            imgui.text(
                f"{int(minutes):02d}:{seconds:04.1f}  {samples:,} samples  "
                f"{format_bytes(self._size)} on disk"
            )
            counts = ", ".join(
                f"{self._name(index)}: {count}"
                for index, count in sorted(self._label_counts.items())
            )
            imgui.text(f"labels: {counts or 'none yet'}")
        if ctx.status_message:
            imgui.text_wrapped(ctx.status_message)

    def _name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)

    def _refresh_size(self) -> None:
        now = time.monotonic()
        session = self._session
        if now < self._size_due or self._sizer.busy or session is None:
            return
        self._size_due = now + SIZE_REFRESH_S

        def measure() -> None:
            self._size = tree_size(session.path)

        self._sizer.submit(measure)


def recording_controls(
    ctx: AppContext,
    class_names: Sequence[str],
    on_record: Callable[[], Any],
    on_stop: Callable[[], Any],
    on_gesture: Callable[[int], Any] | None = None,
) -> RecordingControls:
    """Draw :class:`RecordingControls` (one instance kept per place in the frame); return it.

    The class names, callbacks and ``on_gesture`` given on each call replace the previous ones,
    so a changed class list shows at once.
    """
    controls = widget_instance(
        "recording_controls",
        "",
        lambda: RecordingControls(class_names, on_record=on_record, on_stop=on_stop),
        ctx,
    )
    controls.class_names = class_name_list(class_names)
    controls.on_record, controls.on_stop, controls.on_gesture = on_record, on_stop, on_gesture
    controls.ui(ctx)
    return controls
