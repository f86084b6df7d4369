"""``labsession plot SESSION``: a PNG of a recorded session's traces, labels and gaps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_FORMATS = (".png", ".svg", ".pdf")


def _channels_syntax(value: str | None) -> str | None:
    """Check ``--channels`` before anything is opened (typer callback)."""
    if value is None:
        return None
    from labsession.recording._plot_data import parse_channels

    try:
        parse_channels(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--channels'") from None
    return value


def _output_form(value: Path | None) -> Path | None:
    if value is None:
        return None
    if value.suffix.lower() not in _FORMATS:
        raise typer.BadParameter(
            f"{str(value)!r} has no picture suffix; use one of {', '.join(_FORMATS)}",
            param_hint="'--output'",
        )
    if not value.parent.is_dir():
        raise typer.BadParameter(
            f"{str(value)!r}: folder {str(value.parent)!r} does not exist",
            param_hint="'--output'",
        )
    return value


def _stem(session: Path) -> str:
    name = session.name
    for suffix in (".session.zip", ".zip"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name or "session"


def plot(
    session: Annotated[
        Path, typer.Argument(metavar="SESSION", help="A session folder or .session.zip.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            callback=_output_form,
            help="Picture to write (.png, .svg or .pdf; default: <session name>.png here).",
        ),
    ] = None,
    stream: Annotated[
        str | None, typer.Option("--stream", help="Stream to plot (default: the first).")
    ] = None,
    channels: Annotated[
        str | None,
        typer.Option(
            "--channels",
            callback=_channels_syntax,
            help="Channels: N, A:B (end exclusive) or a list, e.g. 0:8 or 0,2,5 (default: 0:8).",
        ),
    ] = None,
    start: Annotated[
        float | None,
        typer.Option("--start", min=0.0, help="Window start, s from the first sample."),
    ] = None,
    end: Annotated[
        float | None,
        typer.Option("--end", min=0.0, help="Window end, s from the first sample."),
    ] = None,
    width: Annotated[
        int, typer.Option("--width", min=200, max=20000, help="Picture width in pixels.")
    ] = 1600,
) -> None:
    """Plot a session: channel traces, label segments shaded and named, gaps hatched red.

    Stacked channel traces (min/max per pixel for long sessions), label segments shaded and
    named, time in seconds, and the integrity record's gaps hatched red.
    """
    import matplotlib

    matplotlib.use("Agg")

    from labsession.core.atomic import atomic_path
    from labsession.recording import open_session_store, plot_session
    from labsession.recording._plot_data import select_channels

    if end is not None and end <= (start or 0.0):
        raise typer.BadParameter(
            f"--end {end:g} must be after --start {start or 0.0:g} (seconds)",
            param_hint="'--end'",
        )
    out = output if output is not None else Path.cwd() / f"{_stem(session)}.png"
    with open_session_store(session) as store:  # SessionError: exit 1, one line
        names = store.stream_names
        if stream is not None and stream not in names:
            raise typer.BadParameter(
                f"{stream!r} is not a stream of {session}; its streams: {', '.join(names)}",
                param_hint="'--stream'",
            )
        name = stream or (names[0] if names else None)
        if name is not None:
            info = store.stream_info(name)
            try:
                select_channels(channels, info.n_channels, where=f"stream {name!r}")
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="'--channels'") from None
            duration = _duration(store, name)
            if start is not None and start > 0 and start >= duration:
                raise typer.BadParameter(
                    f"--start {start:g} is at or past the end of stream {name!r} "
                    f"({duration:.3f} s)",
                    param_hint="'--start'",
                )
        fig = plot_session(
            store, stream=stream, channels=channels, start=start, end=end, width_px=width
        )
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".").lower(), dpi=fig.dpi)
    typer.echo(str(out))


def _duration(store, name: str) -> float:
    """Seconds from the first to the last sample of stream ``name`` (0 without samples)."""
    n = store.n_samples(name)
    if n == 0:
        return 0.0
    first = store.read_rows(name, 0, 1, timestamps=True)[0]
    last = store.read_rows(name, n - 1, n, timestamps=True)[0]
    return float(last - first)
