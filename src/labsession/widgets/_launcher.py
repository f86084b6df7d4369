"""Start and stop helper processes (a synthetic stream, a game, a visualiser) from the GUI."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgui_bundle import imgui

from labsession.widgets._process_output import (
    GROUP_KWARGS,
    READER_GRACE,
    OutputBuffer,
    OutputReader,
    end_group,
    signal_group,
)
from labsession.widgets._tasks import TaskQueue

__all__ = ["ProcessLauncher", "ProcessStatus", "status_colour"]

log = logging.getLogger(__name__)

GREEN = (0.30, 0.80, 0.35, 1.0)
GREY = (0.55, 0.55, 0.55, 1.0)
YELLOW = (0.95, 0.75, 0.20, 1.0)
RED = (0.95, 0.30, 0.30, 1.0)

State = Literal["idle", "running", "stopping", "stopped", "exited", "failed"]


@dataclass(frozen=True)
class ProcessStatus:
    """What one helper process is doing, as :meth:`ProcessLauncher.status` reports it.

    Attributes
    ----------
    state
        ``"idle"`` (never started), ``"running"``, ``"stopping"`` (Stop clicked, not ended yet),
        ``"stopped"`` (ended by Stop or :meth:`~ProcessLauncher.close`), ``"exited"`` (ended on
        its own, ``returncode`` says how) or ``"failed"`` (could not start, ``error`` says why).
    returncode
        Exit status once ended (negative: killed by that signal), else None.
    pid
        Process id of the latest start, None before one.
    error
        ``"TypeName: message"`` when the start failed.
    """

    state: State
    returncode: int | None = None
    pid: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """False when the process failed to start or exited with a non-zero status by itself."""
        return not (self.state == "failed" or (self.state == "exited" and self.returncode != 0))

    def describe(self) -> str:
        """A short sentence for the user: ``"running (pid 123)"``, ``"exited with code 3"``."""
        if self.state == "running":
            return f"running (pid {self.pid})"
        if self.state == "stopping":
            return f"stopping (pid {self.pid})"
        if self.state == "failed":
            return f"failed to start: {self.error}"
        if self.state == "idle":
            return "not started"
        code = self.returncode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return f"stopped ({how})" if self.state == "stopped" else how


def status_colour(status: ProcessStatus) -> tuple[float, float, float, float]:
    """RGBA of the status dot: green running, yellow stopping, grey stopped, red failed."""
    if status.state == "running":
        return GREEN
    if status.state == "stopping":
        return YELLOW
    return GREY if status.ok else RED


class _Helper:
    """One launchable process: its argv, latest Popen, output lines and reader thread."""

    def __init__(self, label: str, argv: list[str], max_lines: int):
        self.label = label
        self.argv = argv
        self.max_lines = max_lines
        self.buffer = OutputBuffer(max_lines)
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: OutputReader | None = None
        self.error: str | None = None
        self.stop_requested = False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> ProcessStatus:
        proc = self.proc
        if self.error is not None:
            return ProcessStatus("failed", error=self.error)
        if proc is None:
            return ProcessStatus("idle")
        code = proc.poll()
        if code is None:
            return ProcessStatus("stopping" if self.stop_requested else "running", pid=proc.pid)
        state: State = "stopped" if self.stop_requested else "exited"
        return ProcessStatus(state, returncode=code, pid=proc.pid)

    def output(self) -> list[str]:
        return self.buffer.lines()

    def leftovers(self) -> bool:
        """True while the latest run's process (group) may still run or hold its pipe."""
        return self.running() or (self.reader is not None and self.reader.is_alive())


def _end(
    helper: _Helper,
    proc: subprocess.Popen[bytes] | None,
    reader: OutputReader | None,
    timeout: float,
    *,
    terminated: bool = False,
) -> int | None:
    """End ``helper``'s process ``proc`` and its children (:func:`end_group`); its status."""
    if proc is None:
        return None
    if proc.poll() is None:
        helper.stop_requested = True
    return end_group(proc, reader, timeout, label=helper.label, terminated=terminated)


def _end_all(helpers: list[_Helper], timeout: float) -> None:
    """Terminate every process group at once, then kill those still alive after ``timeout``."""
    runs = [(h, h.proc, h.reader) for h in helpers if h.leftovers()]
    for helper, proc, _ in runs:
        assert proc is not None
        if proc.poll() is None:
            helper.stop_requested = True
        signal_group(proc, kill=False)
    deadline = time.monotonic() + timeout
    for helper, proc, reader in runs:
        _end(helper, proc, reader, max(0.0, deadline - time.monotonic()), terminated=True)
    for helper in helpers:
        if helper.reader is not None:
            helper.reader.join(READER_GRACE + 1.0)


class ProcessLauncher:
    """Start/Stop buttons, a status dot and the latest output of each helper process.

    Each entry ``(label, argv)`` is a process the user starts and stops from the GUI, e.g. a
    synthetic LSL stream: ``("Synthetic EMG", [sys.executable, "-m", "labsession.cli", "synth",
    ...])``. Its stdout and stderr (merged) are read in raw chunks by a thread of its own and
    split into lines: the last ``max_lines`` are kept, each cut to 4096 characters (``"… [N more
    characters]"``), so memory stays bounded whatever the process writes; they show in a
    collapsible panel, the line being written (no newline yet) last. Starting runs
    ``subprocess.Popen`` inline (fast); stopping runs on a background thread, so the frame never
    waits. A start that fails (a program not found) shows the error in red and never raises.

    Each process leads a process group (a session on POSIX) of its own, and stopping ends the
    whole group: SIGTERM, then SIGKILL to what is left after ``stop_timeout`` seconds (on
    Windows, ``taskkill /F /T`` of the process tree). So children it started (a shell script's
    commands) end with it, unless they left its group themselves. Restarting a process that
    exited but left children writing to its output ends those children first.

    The status dot is green while running, yellow while stopping, grey when stopped (by the
    user, or after exit status 0) and red when the process exited on its own with a non-zero
    status (the code is shown) or failed to start.

    Call :meth:`close` when the app exits (or use the launcher as a context manager): it ends
    every process. It also runs at interpreter exit and when the launcher is garbage-collected
    (a weak finalizer), so helpers never outlive the GUI; the app should still call it, because
    at interpreter exit it runs only after the window has closed.

    Parameters
    ----------
    processes
        ``(label, argv)`` pairs; ``argv`` a non-empty sequence of strings or paths.
    max_lines
        Output lines kept per process.
    stop_timeout
        Seconds between SIGTERM and SIGKILL when stopping (to the process and its children).
    cwd
        Working folder of the processes (default: the current one).
    env
        Extra environment variables for the processes. ``PYTHONUNBUFFERED=1`` is set unless
        given, so Python helpers' output shows line by line.

    Notes
    -----
    IDs (public API), for process ``i`` (its position in ``processes``): ``###start_<i>``,
    ``###stop_<i>`` (buttons), ``###output_<i>`` (the tree node that folds the output) and
    ``###log_<i>`` (the child window holding the output).

    Examples
    --------
    >>> import sys
    >>> from labsession import App
    >>> app = App("demo")
    >>> launcher = ProcessLauncher([("hello", [sys.executable, "-c", "print('hi')"])])
    >>> @app.ui
    ... def ui(ctx):
    ...     launcher.ui()
    >>> with launcher:  # ends every helper when the window has closed
    ...     app.run()  # doctest: +SKIP
    """

    def __init__(
        self,
        processes: Sequence[tuple[str, Sequence[str | os.PathLike[str]]]],
        *,
        max_lines: int = 200,
        stop_timeout: float = 3.0,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        if max_lines < 1:
            raise ValueError(f"max_lines must be >= 1, got {max_lines}")
        if stop_timeout < 0:
            raise ValueError(f"stop_timeout must be >= 0 seconds, got {stop_timeout}")
        self._helpers: list[_Helper] = []
        for i, entry in enumerate(processes):
            if not (isinstance(entry, tuple | list) and len(entry) == 2):
                raise ValueError(f"processes[{i}] must be a (label, argv) pair, got {entry!r}")
            label, argv = entry
            if isinstance(argv, str | bytes) or not isinstance(argv, Sequence) or not argv:
                raise ValueError(
                    f"processes[{i}] ({label!r}): argv must be a non-empty list of strings "
                    f"such as [sys.executable, '-m', 'module'], got {argv!r}"
                )
            if not all(isinstance(a, str | os.PathLike) for a in argv):
                raise ValueError(
                    f"processes[{i}] ({label!r}): argv items must be str, got {argv!r}"
                )
            self._helpers.append(_Helper(str(label), [os.fspath(a) for a in argv], max_lines))
        self.stop_timeout = float(stop_timeout)
        self.cwd = None if cwd is None else Path(cwd)
        self.env = {"PYTHONUNBUFFERED": "1", **(env or {})}
        self._tasks = TaskQueue("launcher")
        self._finalizer = weakref.finalize(self, _end_all, self._helpers, self.stop_timeout)

    def __len__(self) -> int:
        return len(self._helpers)

    def __enter__(self) -> ProcessLauncher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- actions -------------------------------------------------------------------------------
    def start(self, i: int) -> ProcessStatus:
        """Start process ``i`` (no-op while it runs); a failure is returned, never raised."""
        helper = self._helpers[i]
        if helper.running():
            return helper.status()
        if helper.leftovers():  # children of the previous run still hold its pipe
            self._tasks.submit(_end, helper, helper.proc, helper.reader, self.stop_timeout)
        buffer = OutputBuffer(helper.max_lines, first_line=f"$ {shlex.join(helper.argv)}")
        helper.buffer = buffer
        helper.error, helper.stop_requested = None, False
        try:
            proc = subprocess.Popen(
                helper.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                bufsize=0,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                **GROUP_KWARGS,
            )
        except (OSError, ValueError) as exc:
            helper.proc, helper.error = None, f"{type(exc).__name__}: {exc}"
            log.warning("could not start %s (%s): %s", helper.label, helper.argv[0], helper.error)
            return helper.status()
        helper.proc = proc
        assert proc.stdout is not None
        helper.reader = OutputReader(proc.stdout, buffer, name=f"labsession-launcher-{i}")
        helper.reader.start()
        log.info("started %s (pid %d): %s", helper.label, proc.pid, shlex.join(helper.argv))
        return helper.status()

    def stop(self, i: int) -> Future[int | None]:
        """Stop process ``i`` and its children on the background thread (SIGTERM, then SIGKILL).

        Doesn't wait.

        Returns the future of its exit status (None if it was never started).
        """
        helper = self._helpers[i]
        if helper.running():
            helper.stop_requested = True
        # The process of now: a later start must not be stopped by this request.
        return self._tasks.submit(_end, helper, helper.proc, helper.reader, self.stop_timeout)

    def close(self, timeout: float | None = None) -> None:
        """End every process and its children (SIGTERM, SIGKILL after ``timeout`` s); wait.

        ``timeout`` defaults to ``stop_timeout``. Idempotent; the launcher can start processes
        again afterwards.
        """
        _end_all(self._helpers, self.stop_timeout if timeout is None else timeout)
        self._tasks.shutdown(wait=True)

    # -- reading -------------------------------------------------------------------------------
    def status(self, i: int) -> ProcessStatus:
        """What process ``i`` is doing now."""
        return self._helpers[i].status()

    def output(self, i: int) -> list[str]:
        """The last ``max_lines`` lines process ``i`` wrote (stdout and stderr merged).

        The first line is the command (``$ argv``) until the output pushes it out; the last is
        the line being written, if it has no newline yet. Lines are cut to 4096 characters.
        """
        return self._helpers[i].output()

    def label(self, i: int) -> str:
        """Label of process ``i``."""
        return self._helpers[i].label

    # -- drawing -------------------------------------------------------------------------------
    def ui(self) -> None:
        """Draw one row per process (dot, label, Start/Stop, status) and its folded output."""
        line_height = imgui.get_text_line_height_with_spacing()
        for i, helper in enumerate(self._helpers):
            status = helper.status()
            self._dot(status)
            imgui.same_line()
            imgui.text_unformatted(helper.label)
            imgui.same_line()
            running = status.state in ("running", "stopping")
            imgui.begin_disabled(running)
            if imgui.small_button(f"Start###start_{i}"):
                self.start(i)
                status = helper.status()
            imgui.end_disabled()
            imgui.same_line()
            imgui.begin_disabled(status.state != "running")
            if imgui.small_button(f"Stop###stop_{i}"):
                self.stop(i)
            imgui.end_disabled()
            imgui.same_line()
            text = status.describe()
            colour = imgui.get_style_color_vec4(imgui.Col_.text_disabled)
            imgui.push_style_color(imgui.Col_.text, colour if status.ok else imgui.ImVec4(*RED))
            imgui.text_wrapped(text)
            imgui.pop_style_color()
            if imgui.tree_node(f"Output###output_{i}"):
                lines = helper.output()
                imgui.begin_child(
                    f"###log_{i}",
                    imgui.ImVec2(0, 8 * line_height + 8),
                    imgui.ChildFlags_.borders.value | imgui.ChildFlags_.resize_y.value,
                    imgui.WindowFlags_.horizontal_scrollbar.value,
                )
                at_bottom = imgui.get_scroll_y() >= imgui.get_scroll_max_y()
                for line in lines:
                    imgui.text_unformatted(line)
                if at_bottom:
                    imgui.set_scroll_here_y(1.0)
                imgui.end_child()
                imgui.tree_pop()

    @staticmethod
    def _dot(status: ProcessStatus) -> None:
        """A filled circle coloured by ``status``, with the status as tooltip."""
        colour = status_colour(status)
        size = imgui.get_text_line_height()
        pos = imgui.get_cursor_screen_pos()
        imgui.get_window_draw_list().add_circle_filled(
            imgui.ImVec2(pos.x + size / 2, pos.y + size / 2),
            size * 0.35,
            imgui.get_color_u32(imgui.ImVec4(*colour)),
        )
        imgui.dummy(imgui.ImVec2(size, size))
        imgui.set_item_tooltip(status.describe())
