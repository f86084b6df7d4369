"""Progress bars (rich) shared by the pipelines and the CLI."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["make_progress"]


def make_progress(
    *, unit: str = "items", disable: bool = False, console: Console | None = None
) -> Progress:
    """Return a rich :class:`~rich.progress.Progress` with description, bar, count and ETA.

    Use it as a context manager; ``disable=True`` keeps the same code path silent (tests, logs).
    """
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=disable,
        console=console,
        transient=False,
    )
