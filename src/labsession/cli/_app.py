"""Root typer app. Sub-commands live in their own modules and import heavy code lazily."""

from __future__ import annotations

import inspect
import re

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
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, metavar="", help="More log output (-vv)."
    ),
    debug: bool = typer.Option(
        False, "--debug", help=f"Print the traceback of a failure (or set {DEBUG_ENV}=1)."
    ),
) -> None:
    """Record, process and archive experiment sessions."""
    from labsession.cli._lsl_log import set_verbosity

    set_debug(ctx, debug)
    set_verbosity(verbose)
    configure_logging(verbose)


def reflow(doc: str) -> str:
    """A command's docstring as ``--help`` should show it: each paragraph one line (the terminal
    wraps it), numbered and bulleted items one line each.

    typer's rich help keeps a docstring's line breaks after its first paragraph, so a paragraph
    wrapped at 96 columns in the source came out ragged in an 80-column terminal.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        items: list[str] = []
        for line in (line.strip() for line in block.splitlines()):
            if items and line and not re.match(r"^(\d+\.|[-*])\s", line):
                items[-1] += " " + line
            elif line:
                items.append(line)
        paragraphs.append("\n".join(items))
    return "\n\n".join(paragraphs)


def _reflow_commands(typer_app: typer.Typer) -> None:
    """Give every command of ``typer_app`` (and of its sub-apps) its docstring reflowed."""
    for command in typer_app.registered_commands:
        doc = command.help or inspect.getdoc(command.callback)
        if doc:
            command.help = reflow(doc)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_commands(group.typer_instance)


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
    _reflow_commands(app)


_register()


def main() -> None:
    """Entry point of the ``labsession`` console script."""
    app()
