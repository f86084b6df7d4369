"""Progress bars (rich) shared by the pipelines and the CLI: on stderr, on a terminal.

Library functions that show progress take ``progress: bool | None = None``: ``None`` shows a bar
only when stderr is a terminal, ``True`` always (a non-terminal stderr gets the final state
once, as rich renders it there), ``False`` never. Bars never go to stdout, so a script's own
output stays clean when it is piped.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["make_progress", "progress_enabled"]


def progress_enabled(progress: bool | None, console: Console | None = None) -> bool:
    """Whether to show a progress bar: ``progress`` itself, or for ``None`` a terminal test.

    Parameters
    ----------
    progress
        ``True``: show; ``False``: do not; ``None``: show only when ``console`` draws on a
        terminal (or in a Jupyter notebook), as rich decides it (``FORCE_COLOR``,
        ``TTY_COMPATIBLE`` and friends count).
    console
        The console the bar would draw on (default: one on stderr).

    Examples
    --------
    >>> progress_enabled(True), progress_enabled(False)
    (True, False)
    """
    if progress is not None:
        return bool(progress)
    target = console if console is not None else Console(stderr=True)
    return target.is_terminal or target.is_jupyter


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _UnitColumn(ProgressColumn):
    """The task's ``unit`` field (``add_task(..., unit="frames")``), else the bar's default."""

    def __init__(self, default: str) -> None:
        super().__init__()
        self.default = default

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("unit", self.default)))


def make_progress(
    *,
    unit: str = "items",
    progress: bool | None = None,
    disable: bool = False,
    console: Console | None = None,
) -> Progress:
    """Return a rich :class:`~rich.progress.Progress` with description, bar, count and ETA.

    Use it as a context manager. A task may name its own unit:
    ``bar.add_task("frames", total=n, unit="frames")``.

    Parameters
    ----------
    unit
        What the count counts (``"recordings"``, ``"frames"``), for tasks that do not say.
    progress
        ``True``: show; ``False``: do not; ``None``: only when stderr is a terminal (see
        :func:`progress_enabled`). A hidden bar keeps the same code path (``add_task``,
        ``update``) silent.
    disable
        Never show (kept for callers that decide themselves).
    console
        Where to draw; default a console on stderr, so stdout carries only the caller's output.
    """
    target = console if console is not None else Console(stderr=True)
    shown = not disable and progress_enabled(progress, target)
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _UnitColumn(unit),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not shown,
        console=target,
        transient=False,
        # Prints to stdout go above the bar only when stdout shares the terminal; piped, they
        # stay in the pipe instead of moving to the bar's stream.
        redirect_stdout=_isatty(sys.stdout),
    )
