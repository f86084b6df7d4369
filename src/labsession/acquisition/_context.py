"""The app's shared state, read by the GUI, hooks and pipelines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from labsession.acquisition._stream import Stream
    from labsession.recording import Session

__all__ = ["AppContext"]


@dataclass
class AppContext:
    """What the app is doing now.

    Attributes
    ----------
    state
        ``"idle"``, ``"recording"``, or ``"error"``: recording, but writing the samples to disk
        failed (a full disk; ``status_message`` names the cause). Acquisition goes on;
        ``session`` is still set until ``App.stop_recording``, which keeps the folder unpacked
        (or ``App.discard_recording``). A failure to write only the label track leaves the
        state ``"recording"``: ``status_message`` says so, the labels stay in memory and are
        written as soon as the disk takes them, and the fault is noted in ``meta.json``.
    streams
        The app's streams by name. ``App.add_stream`` and ``App.remove_stream`` replace the
        dict (never change it in place), so code iterating it on another thread is safe.
    session
        The session being recorded (``None`` when idle; set in ``"error"`` too).
    class_names
        Names of the label classes.
    prediction
        The latest output of the running pipeline's predict function.
    packed
        Paths of the ``.session.zip`` files packed so far, oldest first.
    packing
        Folders of sessions being packed now (by ``stop_recording``'s background thread): they
        are not finished sessions to offer for repair.
    close_hooks
        Called (in order, on the thread of ``App.run``) when the app's run loop ends, before a
        recording in progress is stopped: widgets finish the actions queued before the window
        closed there (a Record click still being started, a label).
    status_message
        A short message for the user about the latest action (a refused or ignored call, a
        failed pack, a failed write), shown by the GUI; ``""`` when there is nothing to say.
    """

    state: Literal["idle", "recording", "error"] = "idle"
    streams: dict[str, Stream] = field(default_factory=dict)
    session: Session | None = None
    class_names: list[str] = field(default_factory=list)
    prediction: Any = None
    packed: list[Path] = field(default_factory=list)
    packing: set[Path] = field(default_factory=set)
    close_hooks: list[Callable[[], None]] = field(default_factory=list)
    status_message: str = ""
