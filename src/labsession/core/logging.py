"""Logging set-up for command-line use. Library code only calls ``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(verbose: int = 0) -> None:
    """Route ``labsession`` loggers to a rich console handler (called by the CLI, never on import).

    Parameters
    ----------
    verbose
        0 shows warnings, 1 info, 2 or more debug.
    """
    from rich.logging import RichHandler

    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger = logging.getLogger("labsession")
    logger.setLevel(level)
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(show_path=False, rich_tracebacks=True, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
