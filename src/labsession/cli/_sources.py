"""Options shared by the recording commands (``record``, ``gui``): sources and classes.

A source is ``synthetic`` (the embedded EMG generator) or ``lsl:NAME`` (the LSL outlet called
NAME); ``=STREAM`` names the recorded stream (``lsl:MyAmp=emg``). Every value is checked while
click parses the command line, so a mistake ends in one line before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from labsession.cli._validate import ranged

__all__ = [
    "BasePathOption",
    "ChannelsOption",
    "ClassesOption",
    "FsOption",
    "OutOption",
    "SeedOption",
    "SourceSpec",
    "SourcesOption",
    "check_sources",
    "make_source",
    "parse_classes",
    "parse_source",
]

_SOURCES_HELP = "Where samples come from, repeat for more streams: synthetic, or lsl:NAME for the "
_SOURCES_HELP += "LSL outlet NAME; add =STREAM to name the recorded stream (lsl:MyAmp=emg)."


@dataclass(frozen=True)
class SourceSpec:
    """One ``--source`` value, parsed.

    Attributes
    ----------
    kind
        ``"synthetic"`` or ``"lsl"``.
    stream
        Name of the recorded stream (``emg`` for synthetic; the outlet's name, made a valid
        stream name, for LSL) unless ``=STREAM`` names it.
    lsl_name
        The LSL outlet's name (``None`` for synthetic).
    """

    kind: str
    stream: str
    lsl_name: str | None = None


def _bad(spec: str, what: str) -> typer.BadParameter:
    return typer.BadParameter(f"{spec!r} {what}", param_hint="'--source'")


def parse_source(spec: str) -> SourceSpec:
    """``"lsl:MyAmp=emg"`` -> ``SourceSpec("lsl", "emg", "MyAmp")`` (the last ``=`` splits).

    Raises
    ------
    typer.BadParameter
        For anything but ``synthetic[=STREAM]`` or ``lsl:NAME[=STREAM]``, or an invalid stream
        name (letters, digits, ``_``, ``.``, ``-``).
    """
    from labsession.recording._layout import check_stream_name

    body, sep, stream = spec.rpartition("=") if "=" in spec else (spec, "", "")
    if body == "synthetic":
        kind, lsl_name, default = "synthetic", None, "emg"
    elif body.startswith("lsl:") and body[4:].strip():
        kind, lsl_name = "lsl", body[4:]
        default = "".join(c if c.isalnum() or c in "_-." else "_" for c in lsl_name).lstrip("_.-")
    else:
        raise _bad(spec, "is not a source: use 'synthetic' or 'lsl:NAME' (with =STREAM to rename)")
    if sep and not stream:
        raise _bad(spec, "names no stream after '='")
    try:
        name = check_stream_name(stream if sep else default or "lsl")
    except ValueError as exc:
        raise _bad(spec, f"gives no valid stream name: {exc}") from None
    return SourceSpec(kind, name, lsl_name)


def check_sources(specs: list[str]) -> list[str]:
    """Callback of ``--source``: each spec parses and the recorded stream names are unique."""
    seen: dict[str, str] = {}
    for spec in specs:
        stream = parse_source(spec).stream
        if stream in seen:
            raise _bad(
                spec,
                f"records stream {stream!r} as {seen[stream]!r} does: name one with =STREAM",
            )
        seen[stream] = spec
    return specs


def parse_classes(classes: str, minimum: int = 2) -> list[str]:
    """``"Rest, Fist,Open"`` -> ``["Rest", "Fist", "Open"]``.

    Raises
    ------
    typer.BadParameter
        For an empty name, a repeated one, or fewer than ``minimum`` names.
    """

    def bad(what: str) -> typer.BadParameter:
        return typer.BadParameter(f"{classes!r} {what}", param_hint="'--classes'")

    names = [name.strip() for name in classes.split(",")]
    if not classes.strip():
        raise bad("names no class: give comma-separated names, e.g. Rest,Fist,Open")
    if not all(names):
        raise bad("has an empty class name (two commas in a row, or one at an end)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise bad(f"names {', '.join(repeated)} twice; class names must be unique")
    if len(names) < minimum:
        raise bad(f"names {len(names)} class; give at least {minimum} (the first is rest)")
    return names


def _check_classes(classes: str) -> str:
    parse_classes(classes)
    return classes


SourcesOption = Annotated[
    list[str], typer.Option("--source", help=_SOURCES_HELP, callback=check_sources)
]
ClassesOption = Annotated[
    str,
    typer.Option(
        help="Comma-separated unique class names, at least two; the first is rest.",
        callback=_check_classes,
    ),
]
ChannelsOption = Annotated[int, ranged(help="Channels of the synthetic source.", ge=1)]
FsOption = Annotated[float, ranged(help="Rate (Hz) of the synthetic source.", gt=0)]
SeedOption = Annotated[int, ranged(help="Seed of the synthetic source.", ge=0)]
BasePathOption = Annotated[
    Path,
    typer.Option(
        "--base-path", "--out", help="Folder of the sessions (either name).", file_okay=False
    ),
]
#: ``record``'s name for the same folder; ``--base-path`` (the ``App``'s name, and ``gui``'s)
#: works there too.
OutOption = Annotated[
    Path,
    typer.Option(
        "--out", "--base-path", help="Folder of the sessions (either name).", file_okay=False
    ),
]


def make_source(
    spec: str, channels: int, fs: float, classes: list[str], seed: int
) -> tuple[str, Any]:
    """``(stream name, source)`` for ``synthetic[=STREAM]`` or ``lsl:NAME[=STREAM]``."""
    from labsession.sources import LSLSource, SyntheticSource

    parsed = parse_source(spec)
    if parsed.lsl_name is None:
        return parsed.stream, SyntheticSource(channels, fs, classes=classes, seed=seed)
    return parsed.stream, LSLSource(parsed.lsl_name)
