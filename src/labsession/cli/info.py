"""``labsession info PATH``: what a recorded session holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def info(
    path: Annotated[Path, typer.Argument(help="A session folder or .session.zip.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show a session's streams, labels per class, size, and whether it is packed."""
    from labsession.errors import SessionError
    from labsession.recording import session_summary

    try:
        summary = session_summary(path)
    except SessionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    print_summary(summary, Console())


def print_summary(summary: dict, console: Console) -> None:
    """Render a ``session_summary`` as text and tables."""
    state = "packed (.session.zip)" if summary["packed"] else "folder (not packed)"
    console.print(
        f"[bold]{summary['path']}[/bold]\n{state}, {_human_bytes(summary['size_bytes'])}, "
        f"app {summary['app_name']!r}, created {summary['created']}"
    )
    table = Table("stream", "fs (Hz)", "channels", "dtype", "samples", "duration (s)")
    for name, s in summary["streams"].items():
        table.add_row(
            name,
            f"{s['fs']:g}",
            str(s["n_channels"]),
            s["dtype"],
            str(s["n_samples"]),
            f"{s['duration_s']:.2f}",
        )
    console.print(table)
    labels = Table("class", "labels")
    for name, count in summary["labels"].items():
        labels.add_row(name, str(count))
    console.print(labels if summary["labels"] else "no labels")
