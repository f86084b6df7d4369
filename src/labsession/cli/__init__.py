"""The ``labsession`` command line: one typer app with a sub-command per job."""

from labsession.cli._app import app, main

__all__ = ["app", "main"]
