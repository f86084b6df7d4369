"""Logging set-up for command-line use. Library code only calls ``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(verbose: int = 0) -> None:
    """Send ``labsession`` log records to a rich handler on stderr (called by the CLI only).

    Parameters
    ----------
    verbose
        0 shows warnings, 1 info, 2 or more debug.
    """
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger = logging.getLogger("labsession")
    logger.setLevel(level)
    handlers = [h for h in logger.handlers if isinstance(h, RichHandler)]
    if not handlers:
        # On stderr, so that piped stdout carries only a command's output.
        console = Console(stderr=True)
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=True, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        handlers = [handler]
    for handler in handlers:
        # The handler keeps the level: code that lowers the logger's level to copy records
        # into a log file (a motion session's session.log) does not flood the terminal.
        handler.setLevel(level)
