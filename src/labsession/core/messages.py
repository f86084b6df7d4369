"""Error messages on one line: what labsession's errors and the CLI show of other text."""

from __future__ import annotations

import re

__all__ = ["brief", "one_line"]


def one_line(text: str) -> str:
    """``text`` with each line break (and the blanks around it) collapsed to one space."""
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


def brief(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception from a library, on one line of at most ``limit``
    characters (a decoder may quote a whole file, over many lines)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
