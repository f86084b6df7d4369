"""The App: streams, the recording lifecycle, and the run loop (window or headless)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from labsession.acquisition import _app_recording as recording
from labsession.acquisition._context import AppContext
from labsession.acquisition._stream import Stream
from labsession.acquisition._write_faults import WriteFaults
from labsession.recording import LabelEvent, Session
from labsession.recording._preflight import find_unfinished_sessions
from labsession.recording._upkeep import checked_app_name, checked_class_names

if TYPE_CHECKING:
    from labsession.acquisition._pipeline import Pipeline

__all__ = ["App"]

log = logging.getLogger(__name__)


class App:
    """An experiment app: streams fed by sources, recorded into sessions on demand.

    As MyoGestic's App, a second :meth:`start_recording`, a :meth:`stop_recording` or
    :meth:`discard_recording` while idle, and :meth:`add_stream` / :meth:`remove_stream` while
    recording are refused without raising: ``ctx.status_message`` (and the log) say why, so a
    double click never raises out of a GUI callback.

    Parameters
    ----------
    name
        Written to each session's ``meta.json`` as ``app_name``.
    class_names
        Names of the label classes (``meta.json`` ``class_names``).
    base_path
        Where sessions go unless :meth:`start_recording` says otherwise; :meth:`run` lists the
        sessions left unfinished there when it starts.
    min_free_minutes
        :meth:`start_recording` checks that the disk holds at least this many minutes of the
        streams' data (uncompressed); with less it warns (log and ``ctx.status_message``), or
        refuses if ``refuse_low_space``. 0 turns the check off.
    refuse_low_space
        Refuse to start a recording with less room than ``min_free_minutes`` (default: warn).

    Raises
    ------
    SessionError
        If ``name`` or ``class_names`` cannot be written to a session's ``meta.json`` (not text;
        a plain string for ``class_names``, which would be split into letters), here rather
        than at the first recording.

    Examples
    --------
    >>> from labsession import App, Stream
    >>> from labsession.sources import SyntheticSource
    >>> app = App("demo", class_names=["Rest", "Fist"])
    >>> app.streams(Stream("emg", source=SyntheticSource(n_channels=4, fs=500.0)))
    >>> app.run(mode="headless", duration=0.2)
    """

    def __init__(
        self,
        name: str,
        *,
        class_names: Sequence[str] = (),
        base_path: str | Path = "sessions",
        min_free_minutes: float = 10.0,
        refuse_low_space: bool = False,
    ):
        if not min_free_minutes >= 0:
            raise ValueError(f"min_free_minutes must be >= 0, got {min_free_minutes!r}")
        # What each recording's meta.json must hold: refused now, not at the first Record.
        self.name = checked_app_name(name, "App: ")
        class_names = checked_class_names(class_names, f"App {name!r}: ")
        self.base_path = Path(base_path)
        self.min_free_minutes = float(min_free_minutes)
        self.refuse_low_space = bool(refuse_low_space)
        self.ctx = AppContext(class_names=class_names)
        #: Called with the app after the streams start and before the run loop.
        self.before_run_hooks: list[Callable[[App], None]] = []
        #: Called with the app when a :meth:`run` ends (also one that failed to start), after
        #: the pipelines stopped and the recording was saved and packed, before the streams
        #: stop; each one runs whatever the others did (its error is logged, the first one
        #: raised at the end). Kept from one run to the next (``ctx.close_hooks`` is not).
        self.cleanup_hooks: list[Callable[[App], None]] = []
        self.pipelines: list[Pipeline] = []
        self._packers: list[threading.Thread] = []
        self._pack_errors: list[BaseException] = []
        # _lock serialises the recording lifecycle and the set of streams; _state_lock guards
        # ctx.state/ctx.session only and is never held during I/O (a session's error listener
        # takes it on the writer thread while stop_recording may wait for that writer).
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._faults = WriteFaults(name, self.ctx, self._state_lock)
        self._stop_event = threading.Event()
        self._ui: Callable[..., None] | None = None
        self._shutting_down = False
        self._started = False  # the streams were started (start/run) and not stopped by run

    # -- set-up --------------------------------------------------------------------------------
    def streams(self, *streams: Stream) -> None:
        """Add streams (names must be unique)."""
        for stream in streams:
            if stream.name in self.ctx.streams:
                raise ValueError(f"app {self.name!r} already has a stream named {stream.name!r}")
            self.ctx.streams[stream.name] = stream

    def ui(self, func: Callable[..., None]) -> Callable[..., None]:
        """Decorator: the GUI callback, drawn every frame in ``run(mode="gui")``."""
        self._ui = func
        return func

    def add_stream(self, stream: Stream) -> bool:
        """Add a stream while the app runs (or before), starting it if the app's streams run.

        As MyoGestic's ``add_stream``: for an operator who adds a device from the GUI. Refused
        (False, the reason in ``ctx.status_message``) while recording (also in state
        ``"error"``: the session has one array per stream, fixed at :meth:`start_recording`),
        and for a name already taken. ``ctx.streams`` is replaced by a new dict, not changed in
        place, so a frame iterating it meanwhile never sees it change.

        Returns
        -------
        bool
            True if the stream was added.
        """
        with self._lock:
            if self.ctx.session is not None:
                recording.ignored(self, f"cannot add stream {stream.name!r} while recording")
                return False
            if stream.name in self.ctx.streams:
                recording.ignored(self, f"cannot add stream {stream.name!r}: the name is taken")
                return False
            self.ctx.streams = {**self.ctx.streams, stream.name: stream}
            if self._started:
                stream.start()
        self.ctx.status_message = f"stream {stream.name!r} added"
        log.info("app %r: %s", self.name, self.ctx.status_message)
        return True

    def remove_stream(self, name: str) -> bool:
        """Stop stream ``name`` (its thread, then its source) and remove it from the app.

        As MyoGestic's ``remove_stream``. Refused (False, the reason in
        ``ctx.status_message``) while recording (also in state ``"error"``), and for a name the
        app does not have. Widgets find their stream by name each frame and show it missing; a
        :class:`Pipeline` predicting on it logs an error at each prediction until a stream of
        that name is added again (stop it first).

        Returns
        -------
        bool
            True if the stream was removed.
        """
        with self._lock:
            if self.ctx.session is not None:
                recording.ignored(self, f"cannot remove stream {name!r} while recording")
                return False
            stream = self.ctx.streams.get(name)
            if stream is None:
                recording.ignored(self, f"cannot remove stream {name!r}: there is none")
                return False
            self.ctx.streams = {k: v for k, v in self.ctx.streams.items() if k != name}
        stream.stop()
        self.ctx.status_message = f"stream {name!r} removed"
        log.info("app %r: %s", self.name, self.ctx.status_message)
        return True

    def start(self) -> None:
        """Start every stream's acquisition thread (idempotent)."""
        with self._lock:
            self._started = True
            streams = list(self.ctx.streams.values())
        for stream in streams:
            stream.start()

    def wait_connected(self, timeout: float = 10.0) -> list[str]:
        """Wait up to ``timeout`` s for the streams to connect; return those still unconnected.

        Returns early when :meth:`request_stop` is called (Ctrl-C while waiting for a device).
        """
        deadline = time.monotonic() + timeout
        for stream in self.ctx.streams.values():
            while not stream.wait_connected(min(0.05, max(0.0, deadline - time.monotonic()))):
                if self._stop_event.is_set() or time.monotonic() >= deadline:
                    break
        return [name for name, s in self.ctx.streams.items() if not s.connected]

    # -- recording -----------------------------------------------------------------------------
    def start_recording(self, base_path: str | Path | None = None) -> Session:
        """Create a session under ``base_path`` (default: the app's) and record every connected
        stream into it.

        Streams whose source has not connected yet are skipped, with a warning naming them.
        First the folder must be writable, and its free space is checked against
        ``min_free_minutes`` of the streams' data (see the class parameters).
        If the session later fails to write its samples (a full disk), the app goes to state
        ``"error"`` with ``ctx.status_message`` naming the cause; acquisition goes on (live
        view, pipelines) and :meth:`stop_recording` ends it, keeping the folder. If only the
        label track cannot be written, the recording goes on in state ``"recording"`` and
        ``ctx.status_message`` says so: the labels are written as soon as the disk takes them.

        While a recording is in progress (also in state ``"error"``) this is a no-op that
        returns that recording's session, with ``ctx.status_message`` saying so.

        Raises
        ------
        SessionError
            If the app has no stream or none has connected yet, the folder is not writable,
            has too little room (with ``refuse_low_space``), or the session cannot be created on
            disk (nothing is recorded then). Streams not connected yet while others are are left
            out of the session, and ``ctx.status_message`` says so.
        """
        return recording.start(self, base_path)

    def unfinished_sessions(self, base_path: str | Path | None = None) -> list[Path]:
        """Session folders under ``base_path`` (default: the app's) left unfinished: a crash, a
        full disk or a kill left them, and no live process holds them.

        Finish each with ``Session.attach(folder).pack_to_zip()``, or with the Finish button of
        the session manager. :meth:`run` lists them when it starts.
        """
        return find_unfinished_sessions(self.base_path if base_path is None else base_path)

    def add_label(self, class_index: int, timestamp: float | None = None) -> LabelEvent:
        """Label the recording from now (or ``timestamp``) on as class ``class_index``.

        Raises
        ------
        RuntimeError
            If no recording is in progress (the label would be lost).
        """
        session = self.ctx.session
        if session is None:
            raise RuntimeError(f"app {self.name!r} is not recording; start_recording() first")
        return session.add_label(class_index, timestamp)

    def stop_recording(self, *, pack: bool = True) -> Session | None:
        """Stop recording: detach the streams, save meta, and pack on a background thread.

        No sample read before the call is lost: each stream's detach waits for a read already
        under way to reach the session (at most :attr:`Stream.detach_wait` s per stream, so a
        read blocked in a reconnect never holds the stop up; what such a read returns later is
        counted, not stored). Call :meth:`wait_idle` to wait for the pack.

        A session whose writing failed (state ``"error"``) is closed, not packed: the folder is
        kept with what reached the disk (and labels, written if space is back by now, else
        logged), ``ctx.status_message`` says so, and the state is ``"idle"`` again. Finish it
        with ``Session.attach(folder).pack_to_zip()`` once space is freed.

        Returns
        -------
        Session or None
            The session stopped; None when no recording was in progress (a no-op, said in
            ``ctx.status_message``).
        """
        return recording.stop(self, pack)

    def discard_recording(self) -> Path | None:
        """Stop the recording and delete it: nothing saved, nothing packed, the folder removed.

        For a take thrown away (a false start, a bad trial), as MyoGestic's
        ``discard_recording``. The streams are detached (an append in progress completes
        first) and the state is ``"idle"`` at once; then the session is closed and its folder
        renamed to a hidden ``.<name>.<8 hex>.discarded`` (no half-deleted session is ever
        listed) and deleted. Also ends a recording in state ``"error"``. Acquisition goes on.

        Returns
        -------
        Path or None
            The deleted folder; None when no recording was in progress (a no-op, said in
            ``ctx.status_message``).

        Raises
        ------
        SessionError
            If the folder cannot be removed (it is kept whole; the state is ``"idle"`` anyway).
        """
        return recording.discard(self)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for background packing to finish; raise the first packing error if any."""
        for thread in list(self._packers):
            thread.join(timeout)
        self._packers = [t for t in self._packers if t.is_alive()]
        if self._pack_errors:
            raise self._pack_errors.pop(0)

    # -- running -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe; what Ctrl-C and SIGTERM do)."""
        self._stop_event.set()

    @property
    def stop_requested(self) -> bool:
        """True once :meth:`request_stop` was called during the current :meth:`run`."""
        return self._stop_event.is_set()

    def draw_ui(self) -> None:
        """Draw one frame of the app's GUI: the ``@app.ui`` callback with :attr:`ctx`.

        Called by the window loop of ``run(mode="gui")``, inside an imgui frame. Without an
        ``@app.ui`` callback, a short text says how to add one.
        """
        if self._ui is not None:
            self._ui(self.ctx)
            return
        from imgui_bundle import imgui

        imgui.text(f"{self.name}: {self.ctx.state}")
        imgui.text_wrapped(
            "This app has no GUI yet: decorate a function with @app.ui to draw one "
            "(labsession.widgets has recording controls, a session manager and live plots), "
            "or run `labsession gui` for the ready-made recorder."
        )

    def run(
        self,
        mode: Literal["gui", "headless"] = "gui",
        *,
        duration: float | None = None,
        connect_timeout: float = 5.0,
        window_size: tuple[int, int] = (1280, 800),
        runner_params: Any = None,
    ) -> None:
        """Start the streams, wait for them to connect, run the hooks and pipelines, then loop.

        Streams get up to ``connect_timeout`` seconds to connect before the hooks run (those
        still unconnected are named in a warning and keep trying).

        ``mode="gui"`` (the default) opens a window of ``window_size`` pixels and draws the
        ``@app.ui`` callback every frame until the window is closed. ``runner_params`` is an
        optional ``imgui_bundle.hello_imgui.RunnerParams`` to start from: the app sets its own
        ``show_gui`` and keeps the other callbacks (``register_tests``, ``post_new_frame``...),
        so imgui's test engine or other settings can be added. The window layout is kept in the
        per-user state folder (:func:`labsession.core.paths.user_state_dir`), never in the
        working directory. Disk, LSL and packing stay on their own threads: the window never
        waits on them.

        ``mode="headless"`` waits without a window.

        Either way the app runs until the window closes (GUI), ``duration`` seconds pass,
        :meth:`request_stop` is called, or the process gets Ctrl-C / SIGTERM; a recording in
        progress is then stopped, saved and packed before ``run`` returns.

        Whatever ends the run, :attr:`cleanup_hooks` are then called (see there).

        Raises
        ------
        ValueError
            For a ``mode`` other than ``"gui"`` and ``"headless"``; nothing has started then.
        DisplayError
            In GUI mode, when there is no display to open the window on; the message names
            ``mode="headless"``. Nothing has started then.
        """
        if mode not in ("gui", "headless"):
            raise ValueError(f"mode must be 'gui' or 'headless', got {mode!r}")
        if mode == "gui":
            from labsession.acquisition._window import check_display

            check_display()
        self._stop_event.clear()
        self._shutting_down = False
        restore = self._install_signal_handlers()
        try:
            try:
                recording.report_unfinished(self)
                self.start()
                missing = self.wait_connected(connect_timeout)
                if missing and not self.stop_requested:
                    log.warning(
                        "not connected after %g s (still trying): %s", connect_timeout, missing
                    )
                if not self.stop_requested:
                    self._run_loop(mode, window_size, runner_params, duration)
            except BaseException:
                self._shut_down(raise_errors=False)  # the error that ended the run comes first
                raise
            self._shut_down()
        finally:
            restore()  # only now: Ctrl-C during the packing must not cut it short

    def _run_loop(
        self,
        mode: str,
        window_size: tuple[int, int],
        runner_params: Any,
        duration: float | None,
    ) -> None:
        for hook in self.before_run_hooks:
            hook(self)
        for pipeline in self.pipelines:
            pipeline.start()
        if mode == "gui":
            from labsession.acquisition._window import run_window

            run_window(
                self, window_size=window_size, runner_params=runner_params, duration=duration
            )
        else:
            self._stop_event.wait(duration)

    def _shut_down(self, *, raise_errors: bool = True) -> None:
        """End a run: close hooks, pipelines, the recording (saved and packed), cleanup hooks,
        the streams.

        Every step is tried whatever failed before it; the first error is raised at the end
        (with ``raise_errors``; each one is logged either way).
        """
        self._shutting_down = True
        errors: list[BaseException] = []

        def attempt(step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as exc:
                log.exception("while stopping app %r", self.name)
                errors.append(exc)

        hooks, self.ctx.close_hooks[:] = list(self.ctx.close_hooks), []
        for hook in hooks:
            attempt(hook)
        for pipeline in self.pipelines:
            attempt(pipeline.stop)
        attempt(lambda: recording.stop(self, True, quiet=True))
        attempt(self.wait_idle)
        for cleanup in list(self.cleanup_hooks):
            attempt(lambda hook=cleanup: hook(self))
        with self._lock:  # from now on add_stream does not start what would not be stopped
            self._started = False
            streams = list(self.ctx.streams.values())
        for stream in streams:
            attempt(stream.stop)
        if errors and raise_errors:
            raise errors[0]

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            name = signal.Signals(signum).name
            if self._shutting_down:
                log.warning("received %s: still stopping; the recording is being saved", name)
                return
            log.warning("received %s: stopping (a recording in progress is saved and packed)", name)
            self.request_stop()

        for sig in previous:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore
