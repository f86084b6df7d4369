"""Options shared by the recording commands (``record``, ``gui``): sources and classes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = [
    "BasePathOption",
    "ChannelsOption",
    "ClassesOption",
    "FsOption",
    "SeedOption",
    "SourcesOption",
    "make_source",
    "parse_classes",
]

SourcesOption = Annotated[
    list[str], typer.Option("--source", help="synthetic or lsl:NAME (repeat for more streams).")
]
ClassesOption = Annotated[str, typer.Option(help="Comma-separated class names; the first is rest.")]
ChannelsOption = Annotated[int, typer.Option(help="Channels of the synthetic source.")]
FsOption = Annotated[float, typer.Option(help="Rate (Hz) of the synthetic source.")]
SeedOption = Annotated[int, typer.Option(help="Seed of the synthetic source.")]
BasePathOption = Annotated[Path, typer.Option("--base-path", help="Folder of the sessions.")]


def parse_classes(classes: str) -> list[str]:
    """``"Rest, Fist,Open"`` -> ``["Rest", "Fist", "Open"]``."""
    return [name.strip() for name in classes.split(",") if name.strip()]


def make_source(
    spec: str, channels: int, fs: float, classes: list[str], seed: int
) -> tuple[str, Any]:
    """``(stream name, source)`` for ``synthetic`` or ``lsl:NAME``."""
    from labsession.sources import LSLSource, SyntheticSource

    if spec == "synthetic":
        return "emg", SyntheticSource(channels, fs, classes=classes, seed=seed)
    if spec.startswith("lsl:") and len(spec) > 4:
        name = spec[4:]
        stream = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
        return stream, LSLSource(name)
    raise typer.BadParameter(f"unknown source {spec!r}: use 'synthetic' or 'lsl:NAME'")
