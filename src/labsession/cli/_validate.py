"""Checks of option values, run by click while it parses the command line (before any command).

Each check raises :class:`typer.BadParameter`, which click prefixes with the option's name, so the
user reads one line naming the option, the value and what is allowed::

    error: Invalid value for '--cycle': -1.0 is not in the range x>0.

typer's own ``min=``/``max=`` say "Input should be greater than or equal to 1" without the value
given, so numeric options use :func:`ranged` instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import typer

__all__ = ["choice", "describe_range", "matches", "non_blank", "ranged"]


def describe_range(
    *, gt: float | None = None, ge: float | None = None, le: float | None = None
) -> str:
    """``"x>0"``, ``"x>=1"``, ``"1<=x<=3"``: the allowed range as click writes it."""
    low = f"x>{gt:g}" if gt is not None else f"x>={ge:g}" if ge is not None else "x"
    if le is None:
        return low
    return f"{ge:g}<=x<={le:g}" if ge is not None and gt is None else f"{low}, x<={le:g}"


def _range_check(
    gt: float | None, ge: float | None, le: float | None, why: str | None
) -> Callable[[Any], Any]:
    allowed = describe_range(gt=gt, ge=ge, le=le)

    def check(value: Any) -> Any:
        if value is None:
            return value
        for item in value if isinstance(value, list | tuple) else [value]:
            bad = (
                (gt is not None and not item > gt)
                or (ge is not None and not item >= ge)
                or (le is not None and not item <= le)
            )
            if bad:
                reason = f": {why}" if why else "."
                raise typer.BadParameter(f"{item!r} is not in the range {allowed}{reason}")
        return value

    return check


def ranged(
    *param_decls: str,
    help: str,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    why: str | None = None,
    **kwargs: Any,
) -> Any:
    """A ``typer.Option`` whose value must lie in a range (checked while parsing).

    Parameters
    ----------
    param_decls
        The option's names, as for ``typer.Option``.
    help
        Help text; the range is appended (``"Seconds per cue. Allowed: x>0."``).
    gt, ge, le
        Bounds: greater than, greater or equal, less or equal.
    why
        Said after the range when the value is refused (why that minimum, for instance).
    kwargs
        Passed on to ``typer.Option``.
    """
    allowed = describe_range(gt=gt, ge=ge, le=le)
    return typer.Option(
        *param_decls,
        help=f"{help} Allowed: {allowed}.",
        callback=_range_check(gt, ge, le, why),
        **kwargs,
    )


def choice(values: Sequence[str], *, lower: bool = True) -> Callable[[Any], Any]:
    """Callback accepting one of ``values`` (case-insensitively; returned as listed)."""
    by_key = {v.lower() if lower else v: v for v in values}

    def check(value: Any) -> Any:
        if value is None:
            return value
        found = by_key.get(value.lower() if lower else value)
        if found is None:
            allowed = ", ".join(repr(v) for v in values)
            raise typer.BadParameter(f"{value!r} is not one of {allowed}.")
        return found

    return check


def non_blank(value: Any) -> Any:
    """Callback refusing an empty or blank text (``None`` passes: the option was not given)."""
    if value is not None and not str(value).strip():
        raise typer.BadParameter(f"{value!r} is empty; give a name.")
    return value


def matches(pattern: str, example: str) -> Callable[[Any], Any]:
    """Callback accepting a text that matches the regular expression ``pattern`` whole."""
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if value is not None and not compiled.fullmatch(value):
            raise typer.BadParameter(f"{value!r} is not in the expected form, e.g. {example!r}.")
        return value

    return check
