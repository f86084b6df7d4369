"""The recording half of the App: start, stop (saved and packed) or discard a recording.

The App's public methods (documented there) call these functions with the app; they hold the
App's locks as described in :mod:`labsession.acquisition._app`: ``app._lock`` serialises the
recording lifecycle and the set of streams, ``app._state_lock`` guards ``ctx.state`` and
``ctx.session`` only and is never held during I/O (a session's error listener takes it on the
writer thread while a stop may wait for that writer).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from labsession.acquisition._discard import discard_session
from labsession.errors import SessionError
from labsession.recording import Session
from labsession.recording._preflight import check_recording_space, data_rate

if TYPE_CHECKING:
    from labsession.acquisition._app import App

__all__ = ["discard", "ignored", "report_unfinished", "start", "stop"]

log = logging.getLogger(__name__)


def ignored(app: App, message: str) -> None:
    """A refused or no-op call: say why in ``ctx.status_message`` and the log."""
    app.ctx.status_message = message
    log.warning("app %r: %s", app.name, message)


def start(app: App, base_path: str | Path | None) -> Session:
    """``App.start_recording``."""
    with app._lock:
        current = app.ctx.session
        if current is not None:
            ignored(
                app,
                f"already recording to {current.path} (state {app.ctx.state!r}): "
                "start_recording ignored; stop the recording first",
            )
            return current
        base_path = app.base_path if base_path is None else base_path
        if not app.ctx.streams:  # the session would be packed as a take holding nothing
            raise SessionError(
                f"not recording: app {app.name!r} has no stream; add one first, e.g. "
                f"app.streams(Stream('emg', SyntheticSource())), then start it and record"
            )
        skipped = [name for name, s in app.ctx.streams.items() if s.info is None]
        if len(skipped) == len(app.ctx.streams):
            # A session of no stream would be packed as a take holding nothing.
            raise SessionError(
                f"not recording: no stream has connected yet ({', '.join(skipped)}); start "
                f"the device or its LSL outlet, wait for it to connect, then record"
            )
        low_space = _check_space(app, base_path)
        session = Session(base_path, app_name=app.name, class_names=app.ctx.class_names)
        if skipped:
            without = (
                f"recording without {', '.join(skipped)}: not connected yet when the recording "
                f"started (a stream that connects later is not added to this session)"
            )
            log.warning("%s", without)
            app.ctx.status_message = "; ".join(m for m in (low_space, without) if m)
        try:
            for name, stream in app.ctx.streams.items():
                if stream.info is not None:
                    session.init_stream(name, stream.info)
                    stream.attach_session(session, on_error=app._faults.on_append_error)
        except BaseException:
            for stream in app.ctx.streams.values():
                stream.detach_session()
            try:
                session.close()
            except SessionError as exc:
                log.warning("%s", exc)
            raise
        with app._state_lock:
            app.ctx.session, app.ctx.state = session, "recording"
    app._faults.watch(session)
    log.info("recording to %s", session.path)
    return session


def _check_space(app: App, base_path: str | Path) -> str:
    """Warn (``ctx.status_message``, the log) or refuse when the disk is low; return the
    warning ("" when there is room)."""
    infos = [s.info for s in app.ctx.streams.values() if s.info is not None]
    space = check_recording_space(base_path, data_rate(infos))
    if space.minutes_of_room >= app.min_free_minutes:
        return ""
    if app.refuse_low_space:
        raise SessionError(f"not recording: {space.message(app.min_free_minutes)}")
    app.ctx.status_message = f"low disk space: {space.message(app.min_free_minutes)}"
    log.warning("%s", app.ctx.status_message)
    return app.ctx.status_message


def report_unfinished(app: App) -> None:
    """Say in ``ctx.status_message`` (and the log) which sessions were left unfinished."""
    unfinished = app.unfinished_sessions()
    if not unfinished:
        return
    names = ", ".join(f.name for f in unfinished[:5]) + (" ..." if len(unfinished) > 5 else "")
    app.ctx.status_message = (
        f"{len(unfinished)} unfinished session(s) in {app.base_path}: {names}; finish them "
        "in the session manager or with Session.attach(folder).pack_to_zip()"
    )
    log.warning("%s", app.ctx.status_message)


def stop(app: App, pack: bool, *, quiet: bool = False) -> Session | None:
    """``App.stop_recording``; ``quiet``: no status message when idle (the end of a run)."""
    with app._lock:
        session = app.ctx.session
        if session is None:
            if not quiet:
                ignored(app, "not recording: stop_recording ignored")
            return None
        for stream in app.ctx.streams.values():
            stream.detach_session()
        failure: SessionError | None = None
        try:
            session.save_meta(app.name, app.ctx.class_names)
        except SessionError as exc:  # samples could not be written: keep the folder
            failure = exc
        except Exception as exc:  # anything else: never stuck in "recording" either
            log.exception("%s: saving the session failed", session.path)
            failure = SessionError(f"{session.path}: saving failed ({type(exc).__name__}: {exc})")
        if pack and failure is None:  # before the session is let go: never unclaimed
            app.ctx.packing.add(session.path)
        with app._state_lock:
            app.ctx.session, app.ctx.state = None, "idle"
    if failure is not None:
        _close_failed(app, session, failure)
    elif pack:
        thread = threading.Thread(target=_pack, args=(app, session), name="labsession-pack")
        app._packers.append(thread)
        thread.start()
    else:
        session.close()
    return session


def _close_failed(app: App, session: Session, failure: SessionError) -> None:
    try:
        session.close()
        incomplete = ""
    except SessionError as exc:
        incomplete = f" ({exc})"
    app.ctx.status_message = (
        f"recording stopped after a write error; {session.path} is kept unpacked: "
        f"{session.error or failure}{incomplete}. Free space, then finish it"
    )
    log.error("app %r: %s", app.name, app.ctx.status_message)


def _pack(app: App, session: Session) -> None:
    folder = session.path
    try:
        path = session.pack_to_zip()
    except BaseException as exc:
        log.exception("packing %s failed; the folder is kept", folder)
        app.ctx.status_message = f"packing {folder.name} failed: {exc}"
        app._pack_errors.append(exc)
    else:
        app.ctx.packed.append(path)
    finally:
        app.ctx.packing.discard(folder)


def discard(app: App) -> Path | None:
    """``App.discard_recording``."""
    with app._lock:
        session = app.ctx.session
        if session is None:
            ignored(app, "not recording: discard_recording ignored")
            return None
        for stream in app.ctx.streams.values():
            stream.detach_session()
        with app._state_lock:
            app.ctx.session, app.ctx.state = None, "idle"
    try:
        folder = discard_session(session)
    except SessionError as exc:
        app.ctx.status_message = f"discarding the recording failed: {exc}"
        log.error("app %r: %s", app.name, app.ctx.status_message)
        raise
    app.ctx.status_message = f"recording discarded: {folder.name} deleted"
    log.info("app %r: %s", app.name, app.ctx.status_message)
    return folder
