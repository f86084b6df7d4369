"""The session manager: list the recorded sessions, tick some to train on, finish crashed ones."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from imgui_bundle import imgui

from labsession.core.units import format_bytes
from labsession.recording import Session, TrainingData
from labsession.widgets._instances import widget_instance
from labsession.widgets._recording_controls import class_name_list
from labsession.widgets._session_index import RECENT_SECONDS, AppFolders, SessionIndex, SessionRow
from labsession.widgets._tasks import TaskQueue

if TYPE_CHECKING:
    from labsession.acquisition import AppContext

__all__ = ["SessionManager", "session_manager"]

#: Seconds :meth:`SessionManager.close` waits by default (a Finish in progress, a scan).
CLOSE_TIMEOUT = 5.0

_RED = imgui.ImVec4(0.95, 0.35, 0.3, 1.0)
_YELLOW = imgui.ImVec4(0.95, 0.8, 0.3, 1.0)
_COLUMNS = ("", "Session", "Date", "Duration", "Streams", "Labels", "Size", "State")


def _chronological(row: SessionRow) -> tuple[str, str]:
    return (row.created.isoformat() if row.created else "", row.name)


class SessionManager:
    """List the sessions under ``base_path`` and return the ticked ones as :class:`TrainingData`.

    One row per session folder or ``.session.zip``: name, start date, duration, streams,
    labels per class, size and state, with a checkbox ``###session_<name>`` (the file or folder
    name). ``###rescan`` reads every session again; ``###class_filter`` hides the sessions with
    no label of the chosen classes. Unreadable sessions show in red with the reason.

    States: ``packed`` (a ``.session.zip``); ``unfinished`` (an unpacked folder: a crashed
    recording, or one closed without packing, which cannot be told apart cheaply), with a
    ``###finish_<name>`` button that re-opens it with :meth:`Session.attach
    <labsession.recording.Session.attach>` and packs it, on a background thread (the row shows
    ``finishing...``, then the zip, or the error in red); ``recording`` (the folder of
    ``ctx.session``); ``packing`` (a folder of ``ctx.packing``, packed by the app itself);
    ``recording?`` (a folder written to in the last 5 s: perhaps another process's recording).
    Only ``packed`` and ``unfinished`` rows can be ticked or finished; Finish checks again, on
    its thread just before attaching, that the folder is none of the live three.

    The frame never waits on disk: listing and reading happen on a background thread
    (:class:`~labsession.widgets._session_index.SessionIndex`); :meth:`ui` stats the base folder
    at most every 0.5 s (while unpacked folders are listed, they are also re-stamped every
    2 s) and draws the cached rows; an unchanged session is never read twice.

    Parameters
    ----------
    base_path
        Folder of the sessions (need not exist yet; it is never created here).
    title
        Heading drawn above the list.
    class_names
        Classes offered by the filter and handed to :class:`TrainingData` (default: the union
        of the sessions' ``class_names`` for the filter; the first ticked session's for the
        training data).
    ctx
        The app's context: its ``session`` is shown as ``recording``, its ``packing`` folders as
        ``packing``; :meth:`ui` adds :meth:`close` to its ``close_hooks`` (once).

    Notes
    -----
    - Ticks are kept by name. A ticked session that disappears from disk is unticked; a ticked
      folder that is finished passes its tick on to its zip. Ticked rows hidden by the class
      filter stay ticked but are NOT part of the returned training data (the user filtered them
      out). Unreadable and live sessions cannot be ticked.
    - :meth:`ui` returns the same :class:`TrainingData` object across frames while the
      ticked, shown sessions do not change, and a new one when they do. Its ``paths`` are in
      chronological order (the ``groups`` of ``to_arrays`` index into them): by ``meta.json``
      ``created``, which is to the second, then by name for sessions started in one second.
    - Only this process's sessions are known as live (``ctx``). Telling another process's live
      recording from a crashed one (a lock file held by the recorder) is left to a later
      change of the recording layer; until then the 5-second rule guards Finish (a recorder
      that stalls for over 5 s is a known gap). Links to folders are listed, never followed.

    Examples
    --------
    >>> manager = SessionManager("sessions", ctx=app.ctx)  # doctest: +SKIP
    >>> @app.ui  # doctest: +SKIP
    ... def gui(ctx):
    ...     data = manager.ui()  # None until a session is ticked
    ...     if data is not None and imgui.button("Train"):
    ...         pipeline.fit_in_background(data)
    """

    def __init__(
        self,
        base_path: str | os.PathLike[str] = "sessions",
        *,
        title: str = "Sessions",
        class_names: Sequence[str] | None = None,
        ctx: AppContext | None = None,
    ):
        self.base_path = Path(base_path)
        self.title = title
        self.class_names = None if class_names is None else class_name_list(class_names)
        self.ctx = ctx
        self.index = SessionIndex(self.base_path)
        self._closed = False
        self._app_folders = AppFolders(self.base_path)
        self._selected: set[str] = set()
        self._filter: set[str] = set()
        self._finishing: set[str] = set()
        self._finish_errors: dict[str, str] = {}
        self._finished: deque[tuple[str, Path | None, str | None]] = deque()
        self._packed: set[str] = set()  # zips of finished folders not listed yet
        self._tasks = TaskQueue("session-finish")
        self._rows: list[SessionRow] = []
        self._by_name: dict[str, SessionRow] = {}
        self._version = -1
        self._data_key: tuple[object, ...] | None = None
        self._data: TrainingData | None = None

    # -- state (no drawing) --------------------------------------------------------------------
    @property
    def rows(self) -> list[SessionRow]:
        """The rows read so far, newest first (all of them, whatever the filter)."""
        self._refresh()
        return list(self._rows)

    @property
    def visible_rows(self) -> list[SessionRow]:
        """The rows the class filter lets through, newest first."""
        self._refresh()
        return [row for row in self._rows if self._passes_filter(row)]

    def row(self, name: str) -> SessionRow | None:
        """The row of the session named ``name`` (file or folder name), if listed."""
        self._refresh()
        return self._by_name.get(name)

    @property
    def finish_errors(self) -> dict[str, str]:
        """Why the latest Finish of each folder failed, by folder name."""
        self._refresh()
        return dict(self._finish_errors)

    @property
    def selected(self) -> list[str]:
        """Names of the ticked sessions (sorted), including those hidden by the filter."""
        return sorted(self._selected)

    def select(self, names: str | Iterable[str]) -> None:
        """Tick sessions by file or folder name (names not on disk are dropped at the next
        listing; unreadable or live ones are never part of the training data)."""
        self._selected.update([names] if isinstance(names, str) else names)

    def unselect(self, names: str | Iterable[str] | None = None) -> None:
        """Untick the named sessions (all of them when ``names`` is None)."""
        if names is None:
            self._selected.clear()
        else:
            self._selected.difference_update([names] if isinstance(names, str) else names)

    @property
    def class_choices(self) -> list[str]:
        """Classes the filter offers: ``class_names``, else those of the sessions."""
        if self.class_names is not None:
            return list(self.class_names)
        seen: dict[str, None] = {}
        for row in sorted(self.rows, key=_chronological):
            seen.update(dict.fromkeys(row.class_names))
        return list(seen)

    @property
    def class_filter(self) -> list[str]:
        """Classes a row must have a label of to be shown (empty: every row is shown)."""
        return sorted(self._filter)

    def set_class_filter(self, names: Iterable[str]) -> None:
        """Show only the sessions with a label of one of ``names`` (empty: show all)."""
        self._filter = {str(n) for n in names}

    def state(self, row: SessionRow) -> str:
        """``packed``, ``unfinished``, ``recording``, ``recording?``, ``packing``,
        ``finishing`` or ``error``."""
        if row.name in self._finishing:
            return "finishing"
        if not row.packed and self._app_folders.packing(self.ctx, row.name):
            return "packing"
        if row.error is not None:
            return "error"
        if row.packed:
            return "packed"
        if self._app_folders.recording(self.ctx, row.name):
            return "recording"
        recent = time.time() - row.newest_mtime < RECENT_SECONDS
        if recent and row.name not in self._finish_errors:  # not our own failed Finish
            return "recording?"
        return "unfinished"

    @property
    def training_data(self) -> TrainingData | None:
        """The ticked, shown, readable sessions (``None`` when there are none); the same object
        while they do not change."""
        self._refresh()
        rows = sorted(
            (
                row
                for name in self._selected
                if (row := self._by_name.get(name)) is not None
                and self._passes_filter(row)
                and self.state(row) in ("packed", "unfinished")
            ),
            key=_chronological,
        )
        names = self.class_names
        if names is None:
            names = next((list(r.class_names) for r in rows if r.class_names), None)
        key = (tuple(r.path for r in rows), None if names is None else tuple(names))
        if key != self._data_key:
            self._data_key = key
            self._data = TrainingData(key[0], names) if rows else None
        return self._data

    # -- actions -------------------------------------------------------------------------------
    def rescan(self) -> None:
        """Read every session again, on the background thread."""
        self._reopen()
        self.index.request_scan(full=True)

    def finish(self, name: str) -> Future[Path]:
        """Attach the unfinished folder ``name`` and pack it to a zip, on a background thread.

        Raises
        ------
        ValueError
            If ``name`` is not a listed folder in the ``unfinished`` state.
        """
        row = self._by_name.get(name)
        state = None if row is None else self.state(row)
        if row is None or state != "unfinished":
            raise ValueError(
                f"{self.base_path / name}: cannot finish a session that is "
                f"{state or 'not listed'}; only unfinished (unpacked, idle) folders can be"
            )
        self._finishing.add(name)
        self._finish_errors.pop(name, None)
        future = self._tasks.submit(self._finish, name, row.path)
        cancelled = (name, None, "finish cancelled: the manager was closed first")
        future.add_done_callback(lambda f: f.cancelled() and self._finished.append(cancelled))
        return future

    def _finish(self, name: str, path: Path) -> Path:
        """Worker thread: check again that the folder is idle (it may have become live since
        the click), attach, pack, report to the GUI thread through ``_finished``."""
        attached = False
        try:
            self._app_folders.check_idle(self.ctx, path)
            attached = True
            zip_path = Session.attach(path).pack_to_zip()
        except Exception as exc:
            message = str(exc).removeprefix(f"{path}: ")
            self._finished.append((name, None, f"finish failed: {message}"))
            if attached:  # what our own attach wrote is no sign of another recorder
                self._app_folders.note_attempt(path)
            raise
        finally:
            self.index.request_scan()
        self._finished.append((name, zip_path, None))
        return zip_path

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait for the background scan and finish tasks (tests, scripts); False on timeout."""
        deadline = time.monotonic() + timeout
        done = self._tasks.wait(timeout)
        return done and self.index.wait_idle(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float | None = CLOSE_TIMEOUT) -> bool:
        """Stop the background work, waiting at most ``timeout`` s (``None``: no limit); True if
        all stopped in time. A Finish in progress completes on its own (a pack is never cut
        short); queued ones are cancelled. Safe to call twice; a later :meth:`ui` (or
        :meth:`rescan`) starts the background threads again."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        self._closed = True
        stopped = self.index.close(left())  # at once unless a scan is in progress
        stopped &= self._tasks.wait(left())
        self._tasks.shutdown(wait=False)
        return stopped

    def _reopen(self) -> None:
        """After :meth:`close`: a fresh index (the old one's thread may still be winding down)."""
        if self._closed:
            self._closed = False
            self.index = SessionIndex(self.base_path)
            self._version = -1

    # -- bookkeeping ---------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Take the finish results and a new snapshot of the index (GUI thread)."""
        while self._finished:
            name, zip_path, error = self._finished.popleft()
            self._finishing.discard(name)
            if error is not None:
                self._finish_errors[name] = error
            elif zip_path is not None and name in self._selected:
                self._selected.discard(name)
                self._selected.add(zip_path.name)
                self._packed.add(zip_path.name)  # keep its tick until a listing shows it
        version = self.index.version
        if version == self._version:
            return
        self._version = version
        self._rows = self.index.rows()
        self._by_name = {row.name: row for row in self._rows}
        if self.index.exists is not None:
            self._packed -= self.index.names
            listed = self.index.names | self._finishing | self._packed
            self._selected &= listed
            self._finish_errors = {k: v for k, v in self._finish_errors.items() if k in listed}

    def _passes_filter(self, row: SessionRow) -> bool:
        return not self._filter or any(row.label_counts.get(c, 0) for c in self._filter)

    # -- drawing -------------------------------------------------------------------------------
    @property
    def message(self) -> str | None:
        """What :meth:`ui` says above the list (no sessions yet, or why they cannot be listed)."""
        if self.index.listing_error is not None:
            return self.index.listing_error
        if self.index.exists is False or (self.index.exists and not self.index.names):
            return f"no sessions in {self.base_path} yet"
        return None

    def ui(self) -> TrainingData | None:
        """Draw the list inside the current imgui window; return the ticked sessions' data."""
        self._reopen()
        hooks = getattr(self.ctx, "close_hooks", None)
        if hooks is not None and self.close not in hooks:  # once per ctx
            hooks.append(self.close)
        self.index.poll()
        self._refresh()
        imgui.separator_text(self.title)
        if imgui.button("Rescan###rescan"):
            self.rescan()
        imgui.same_line()
        self._draw_filter()
        imgui.same_line()
        visible = [row for row in self._rows if self._passes_filter(row)]
        status = f"{len(visible)} of {len(self._rows)} sessions, {len(self._selected)} ticked"
        imgui.text_disabled(status + ("  reading..." if self.index.scanning else ""))
        if (message := self.message) is not None:
            plain = imgui.get_style_color_vec4(imgui.Col_.text)
            imgui.text_colored(_RED if self.index.listing_error else plain, message)
        data = self.training_data
        self._draw_class_warning()
        if self._rows:
            self._draw_table(visible)
        return data

    def _draw_filter(self) -> None:
        chosen = self.class_filter
        imgui.set_next_item_width(imgui.get_font_size() * 12)
        if not imgui.begin_combo("Classes###class_filter", ", ".join(chosen) or "all classes"):
            return
        if imgui.selectable("all classes###filter_all", not chosen)[0]:
            self._filter.clear()
        for name in self.class_choices:
            changed, on = imgui.checkbox(f"{name}###filter_{name}", name in self._filter)
            if changed:
                (self._filter.add if on else self._filter.discard)(name)
        imgui.end_combo()

    def _draw_class_warning(self) -> None:
        data = self._data
        if data is None:
            return
        kinds = {r.class_names for p in data.paths if (r := self._by_name.get(p.name))}
        kinds.discard(())
        if len(kinds) > 1:
            imgui.text_colored(
                _YELLOW, "the ticked sessions name their classes differently: check the order"
            )

    def _draw_table(self, rows: list[SessionRow]) -> None:
        flags = (
            imgui.TableFlags_.row_bg
            | imgui.TableFlags_.borders_inner_v
            | imgui.TableFlags_.resizable
            | imgui.TableFlags_.scroll_y
            | imgui.TableFlags_.sizing_fixed_fit
        )
        if not imgui.begin_table("##sessions", len(_COLUMNS), flags, imgui.ImVec2(0, 0)):
            return
        for label in _COLUMNS:
            stretch = label in ("Session", "State")
            column_flags = imgui.TableColumnFlags_.width_stretch if stretch else 0
            imgui.table_setup_column(label, column_flags)
        imgui.table_setup_scroll_freeze(0, 1)
        imgui.table_headers_row()
        clipper = imgui.ListClipper()
        clipper.begin(len(rows))
        while clipper.step():
            for i in range(clipper.display_start, clipper.display_end):
                self._draw_row(rows[i])
        clipper.end()
        imgui.end_table()

    def _draw_row(self, row: SessionRow) -> None:
        state = self.state(row)
        imgui.table_next_row()
        imgui.table_next_column()
        imgui.begin_disabled(state not in ("packed", "unfinished"))
        changed, ticked = imgui.checkbox(f"###session_{row.name}", row.name in self._selected)
        imgui.end_disabled()
        if changed:
            (self._selected.add if ticked else self._selected.discard)(row.name)
        imgui.table_next_column()
        if row.error is not None:
            imgui.text_colored(_RED, row.name)
        else:
            imgui.text(row.name)
        imgui.table_next_column()
        imgui.text(row.created.strftime("%Y-%m-%d %H:%M:%S") if row.created else "?")
        imgui.table_next_column()
        if row.duration_s is not None:
            imgui.text(f"{'~' if row.approximate else ''}{row.duration_s:.1f} s")
        imgui.table_next_column()
        imgui.text(", ".join(s.name for s in row.streams))
        if row.streams:
            imgui.set_item_tooltip(
                "\n".join(
                    f"{s.name}: {s.n_channels} ch at {s.fs:g} Hz, {s.n_samples} samples"
                    for s in row.streams
                )
            )
        imgui.table_next_column()
        names = list(row.class_names) + sorted(set(row.label_counts) - set(row.class_names))
        imgui.text(", ".join(f"{n} {row.label_counts[n]}" for n in names if n in row.label_counts))
        imgui.table_next_column()
        imgui.text(format_bytes(row.size_bytes) if row.packed or row.error is None else "")
        imgui.table_next_column()
        self._draw_state(row, state)

    def _draw_state(self, row: SessionRow, state: str) -> None:
        if state == "error":
            imgui.text_colored(_RED, f"unreadable: {row.error}")
            imgui.set_item_tooltip(str(row.error))
            return
        imgui.text("finishing..." if state == "finishing" else state)
        if state == "unfinished":
            imgui.same_line()
            if imgui.small_button(f"Finish###finish_{row.name}"):
                self.finish(row.name)
        error = self._finish_errors.get(row.name)
        if error is not None and state != "finishing":
            imgui.same_line()
            imgui.text_colored(_RED, error)
            imgui.set_item_tooltip(error)


def session_manager(
    base_path: str | os.PathLike[str] = "sessions",
    class_names: Sequence[str] | None = None,
    *,
    ctx: AppContext | None = None,
) -> TrainingData | None:
    """Draw the session list of ``base_path``; return the ticked sessions' training data.

    The function form of :class:`SessionManager` (same behaviour and ``###ids``): one manager
    is kept per ``base_path`` and place in the ID stack, so ticks survive across frames.

    Examples
    --------
    >>> @app.ui  # doctest: +SKIP
    ... def gui(ctx):
    ...     data = session_manager("sessions", ctx=ctx)
    ...     if data is not None and imgui.button("Train"):
    ...         pipeline.fit_in_background(data)
    """
    manager = widget_instance(
        "session_manager",
        str(base_path),
        lambda: SessionManager(base_path, class_names=class_names, ctx=ctx),
        ctx,
    )
    manager.class_names = None if class_names is None else class_name_list(class_names)
    manager.ctx = ctx
    return manager.ui()
