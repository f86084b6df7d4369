"""Numbers as the widgets show them: sizes in the one unit system of the command line."""

from __future__ import annotations

from labsession.core.units import format_bytes

__all__ = ["format_bytes"]
