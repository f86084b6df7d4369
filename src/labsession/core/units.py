"""Sizes as labsession shows them, in one unit system everywhere: binary (KiB, MiB, GiB, TiB)."""

from __future__ import annotations

__all__ = ["format_bytes"]

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float) -> str:
    """A size in bytes as people read it, in binary units (1 KiB = 1024 B).

    Parameters
    ----------
    n
        Size (bytes).

    Returns
    -------
    str
        ``"512 B"``, ``"2.0 KiB"``, ``"2.1 MiB"``, ``"3.5 GiB"``, ``"1.2 TiB"`` (one decimal from
        KiB on; sizes beyond are given in TiB).

    Examples
    --------
    >>> format_bytes(2_200_000)
    '2.1 MiB'
    """
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in _UNITS:
        n /= 1024
        if round(abs(n), 1) < 1024 or unit == _UNITS[-1]:
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
