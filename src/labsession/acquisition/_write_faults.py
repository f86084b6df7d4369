"""What a failed write of the recording does to the App's state.

Two kinds of failure, two outcomes:

- **The samples are not written** (the session's writer failed: a full disk, a drive gone):
  state ``"error"``, ``status_message`` naming the folder and the cause. Acquisition goes on;
  ``stop_recording`` ends the recording and keeps the folder unpacked.
- **Only the label track (or meta.json) could not be written** while the samples still are:
  the recording goes on in state ``"recording"``; ``status_message`` says the labels are kept
  in memory and written as soon as the disk takes them (the session retries within about a
  second, and at the stop). The fault is recorded in the session's ``meta.json``
  (``write_errors``), and a later failure of the samples still turns the state to ``"error"``.

A session tells its first write error to its listeners only, on whichever thread met it (often
its writer thread, which must not wait for itself): :class:`WriteFaults` then learns which kind
it was on a short-lived thread, by flushing the session (the flush raises if the writer failed).
Failures of the samples after that first error reach it from the streams, whose appends the
failed writer refuses (:meth:`Stream.attach_session <labsession.acquisition.Stream.attach_session>`
``on_error``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from labsession.errors import SessionError

if TYPE_CHECKING:
    from labsession.acquisition._context import AppContext
    from labsession.recording import Session

__all__ = ["WriteFaults"]

log = logging.getLogger(__name__)


class WriteFaults:
    """Turn the write failures of the app's current session into ``ctx.state``/``status_message``.

    Parameters
    ----------
    app_name
        Named in the log.
    ctx
        The app's context: only ``state`` and ``status_message`` are changed, and only while
        ``ctx.session`` is the failing session.
    state_lock
        The app's lock over ``ctx.state`` and ``ctx.session`` (never held during I/O).
    """

    def __init__(self, app_name: str, ctx: AppContext, state_lock: threading.Lock):
        self.app_name = app_name
        self.ctx = ctx
        self._state_lock = state_lock
        #: The threads checking a first error (joined by tests through :meth:`wait`).
        self._checks: list[threading.Thread] = []

    def watch(self, session: Session) -> None:
        """Listen to ``session``'s first write error (at once if it has one already)."""
        session.add_error_listener(lambda error: self._on_first_error(session, error))

    def on_append_error(self, session: Session, exc: BaseException) -> None:
        """A stream's append was refused (``Stream.attach_session`` ``on_error``): samples lost."""
        self._samples_failed(session, exc)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the checks in progress (tests)."""
        for thread in list(self._checks):
            thread.join(timeout)
        self._checks = [t for t in self._checks if t.is_alive()]

    # -- internals -----------------------------------------------------------------------------
    def _on_first_error(self, session: Session, error: SessionError) -> None:
        """Any thread, possibly the session's writer: learn the kind off this thread."""
        thread = threading.Thread(
            target=self._classify,
            args=(session, error),
            name="labsession-write-check",
            daemon=True,
        )
        self._checks = [t for t in self._checks if t.is_alive()] + [thread]
        thread.start()

    def _classify(self, session: Session, error: SessionError) -> None:
        try:
            session.flush()  # returns once the samples queued are on disk; raises if they can't be
        except SessionError as exc:
            self._samples_failed(session, exc)
            return
        except Exception:  # a bug: never leave the app unaware of the error
            log.exception("%s: checking the write error failed", session.path)
            self._samples_failed(session, error)
            return
        with self._state_lock:
            if self.ctx.session is not session or self.ctx.state != "recording":
                return
            self.ctx.status_message = (
                f"{error}. The recording goes on (the samples are written); the labels are kept "
                "in memory and written as soon as the disk takes them"
            )
        log.warning("app %r: %s", self.app_name, self.ctx.status_message)

    def _samples_failed(self, session: Session, cause: BaseException) -> None:
        with self._state_lock:
            if self.ctx.session is not session or self.ctx.state == "error":
                return
            self.ctx.state = "error"
            self.ctx.status_message = (
                f"recording failed: {cause}. Acquisition goes on; stop the recording "
                "(its folder is kept)"
            )
        log.error("app %r: recording failed: %s", self.app_name, cause)
