"""The command line's error contract: every mistake and failure ends in one line on stderr.

``labsession`` runs its commands through :class:`LabsessionGroup`, whose ``main`` maps what a
command raises to an exit code and a single ``error: ...`` line:

- a usage error (bad option value, unknown option or command, missing argument): exit 2,
  ``error: <click's message>``, e.g. ``error: Invalid value for '--cycle': -1.0 is not in the
  range x>0.`` (no usage box);
- a labsession error (:class:`~labsession.errors.LabsessionError`), ``ValueError`` or ``OSError``
  (``FileNotFoundError``, ``TimeoutError``, ...): exit 1, ``error: <message>``;
- anything else: exit 1, ``error: <Type>: <message> (run with --debug for the traceback)``;
- ``KeyboardInterrupt`` (Ctrl-C): exit 130, ``error: interrupted``;
- ``typer.Exit(code)``: exit ``code``, nothing printed.

Line breaks inside a message are collapsed, so it stays one line.

With ``labsession --debug ...`` (or ``LABSESSION_DEBUG=1``) the traceback of a runtime failure is
printed above that line. Commands therefore just raise; they never print tracebacks or wrap their
body in ``try/except ... typer.Exit(1)``. Sub-apps (``motion``, ``runs``) are invoked through the
root group, so the same mapping holds in every sub-command, and for ``typer.testing.CliRunner``
too (it calls ``main``).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from labsession.core.messages import one_line
from labsession.errors import LabsessionError

try:  # typer >= 0.20 ships its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer, on click itself
    from click.exceptions import ClickException, UsageError

__all__ = [
    "DEBUG_ENV",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "LabsessionGroup",
    "UsageError",
    "error_line",
    "one_line",
    "set_debug",
]

#: Exit code of a runtime failure.
EXIT_FAILURE = 1
#: Exit code of a usage error (bad option value, unknown option, missing argument).
EXIT_USAGE = 2
#: Exit code after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: Environment variable that turns ``--debug`` on (``1``, ``true``, ``yes`` or ``on``).
DEBUG_ENV = "LABSESSION_DEBUG"

_EXPECTED = (LabsessionError, ValueError, OSError)
_DEBUG_HINT = " (run with --debug for the traceback)"


class _Interrupted(Exception):
    """Carries a ``KeyboardInterrupt`` past typer's handler (which turns it into a silent 130)."""


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        return f"{where}: {exc.strerror}"
    return one_line(str(exc))


def error_line(exc: BaseException, *, debug: bool = False) -> tuple[int, str]:
    """The exit code and the one line (without ``error: ``) reported for ``exc``.

    Parameters
    ----------
    exc
        What the command raised.
    debug
        Whether the traceback is printed too (drops the "run with --debug" hint).
    """
    if isinstance(exc, UsageError):
        return exc.exit_code, one_line(exc.format_message())
    if isinstance(exc, ClickException):
        return exc.exit_code, one_line(exc.format_message())
    if isinstance(exc, _Interrupted):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, typer.Abort):
        return EXIT_FAILURE, "aborted"
    message = _message(exc)
    if isinstance(exc, _EXPECTED):
        return EXIT_FAILURE, message or type(exc).__name__
    line = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return EXIT_FAILURE, line if debug else line + _DEBUG_HINT


def _debug_from_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def set_debug(ctx: typer.Context, debug: bool) -> None:
    """Record the root ``--debug`` flag on the group running the command (``ctx``: any context)."""
    group = ctx.find_root().command
    if isinstance(group, LabsessionGroup):
        group.debug = group.debug or debug


def _hide_flag_types(command: Any, ctx: Any) -> None:
    """Show flags without a value type in ``--help`` (typer renders them as ``<bool>``).

    A flag takes no value, so its metavar is set to ``""``; the help option of each command is
    created (typer caches it) so that it is fixed too.
    """
    help_option = command.get_help_option(ctx) if hasattr(command, "get_help_option") else None
    for param in [*command.params, help_option]:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", "") is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_types(sub, ctx)


class LabsessionGroup(TyperGroup):
    """The root ``labsession`` group: runs a command and reports its failure in one line.

    Pass it as ``typer.Typer(cls=LabsessionGroup)``.
    """

    #: Print tracebacks (set by the root ``--debug`` option or ``LABSESSION_DEBUG=1``).
    debug: bool = False
    _flags_fixed: bool = False

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not self._flags_fixed:
            _hide_flag_types(self, ctx)
            self._flags_fixed = True
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; with ``standalone_mode`` (the default) exit with its code.

        ``standalone_mode=False`` returns the command's result and lets exceptions through, as
        click does.
        """
        if not standalone_mode:
            try:
                return super().main(args, prog_name, complete_var, False, **extra)
            except _Interrupted as exc:
                raise KeyboardInterrupt from exc.__cause__
        self.debug = _debug_from_env()
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except Exception as exc:  # noqa: BLE001 - the contract: every failure is one line
            sys.exit(self._report(exc))
        # typer returns a typer.Exit's code in place of the result; commands return None.
        sys.exit(result if isinstance(result, int) else 0)

    def _report(self, exc: Exception) -> int:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help, printed already by rich
            if not getattr(typer.core, "HAS_RICH", True) or self.rich_markup_mode is None:
                exc.show()  # type: ignore[attr-defined]
            return exc.exit_code  # type: ignore[attr-defined]
        code, line = error_line(exc, debug=self.debug)
        usage = isinstance(exc, ClickException | _Interrupted | typer.Abort)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if self.debug and not usage:
            traceback.print_exception(exc, file=sys.stderr)
        typer.echo(f"{typer.style('error:', fg='red', bold=True)} {line}", err=True)
        return code
