"""Root typer app. Sub-commands live in their own modules and import heavy code lazily."""

from __future__ import annotations

import typer

from labsession._version import __version__
from labsession.cli._errors import DEBUG_ENV, LabsessionGroup, set_debug
from labsession.core.logging import configure_logging

app = typer.Typer(
    name="labsession",
    help="Record, process and archive experiment sessions.",
    no_args_is_help=True,
    add_completion=False,
    cls=LabsessionGroup,
    pretty_exceptions_show_locals=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"labsession {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv)."),
    debug: bool = typer.Option(
        False, "--debug", help=f"Print the traceback of a failure (or set {DEBUG_ENV}=1)."
    ),
) -> None:
    """Record, process and archive experiment sessions."""
    from labsession.cli._lsl_log import set_verbosity

    set_debug(ctx, debug)
    set_verbosity(verbose)
    configure_logging(verbose)


def _register() -> None:
    """Attach each sub-command module's commands (one line per module)."""
    from labsession.cli import demo, gui, info, motion, plot, record, runs

    app.command("info")(info.info)
    app.command("plot")(plot.plot)
    app.command("demo")(demo.demo)
    app.command("gui")(gui.gui)
    app.command("record")(record.record)
    app.command("synth")(record.synth)
    app.add_typer(motion.app, name="motion")
    app.add_typer(runs.app, name="runs")


_register()


def main() -> None:
    """Entry point of the ``labsession`` console script."""
    app()
