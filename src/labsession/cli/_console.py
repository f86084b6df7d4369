"""The CLI's rich console: rich's usual on a terminal, one line per line when piped.

On a terminal rich wraps long lines to the window and draws tables to fit it. Piped into ``cat``,
``grep`` or a file, rich would wrap at 80 columns and cut a long path in two, so there the
console neither wraps text (``soft_wrap``) nor narrows tables (a very wide width): each path and
each table row stays on one line, with no colour codes.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["PIPE_WIDTH", "cli_console"]

#: Width (characters) of the console when not on a terminal: wide enough for any table row.
PIPE_WIDTH = 10_000


def cli_console(*, stderr: bool = False, min_width: int | None = None) -> Console:
    """Return the console a CLI command prints through.

    Parameters
    ----------
    stderr
        Print to stderr instead of stdout.
    min_width
        On a terminal, draw at least this wide (characters) even in a narrower window (for
        tables that would otherwise squeeze their columns).

    Returns
    -------
    rich.console.Console
        On a terminal (or in a notebook): a normal console. Otherwise one with
        ``soft_wrap=True`` and ``width=PIPE_WIDTH``, so no line is ever wrapped.
    """
    console = Console(stderr=stderr)
    if console.is_terminal or console.is_jupyter:
        if min_width is not None and console.width < min_width:
            return Console(stderr=stderr, width=min_width)
        return console
    return Console(stderr=stderr, soft_wrap=True, width=PIPE_WIDTH)
