"""``@session`` and :func:`run`: wrap a script's main function in a run session.

Called without arguments (``main()`` under ``if __name__ == "__main__":``), the decorated function
parses its parameters from the command line, runs inside :func:`start`/:func:`close`, finds
``CONFIG``, ``plt``, ``COLORS``, ``rngg`` and ``logger`` in its module's globals, and the process
exits with the function's return code. An exception moves the run to ``FINISHED_ERROR/`` with its
traceback in ``logs/stderr.log`` and is raised again. A mistake in the run's configuration (a bad
``config/*.yaml``, a bad seed), found before any run folder is made, ends the process with one
``error: ...`` line on stderr and exit status 2, as a bad argument does. Called with arguments,
the decorated function is the plain function: no session, no command line (for tests and
notebooks).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import operator
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from labsession.core.messages import one_line
from labsession.errors import ConfigError
from labsession.runs._archive import archive_path_for
from labsession.runs._argparse import INJECTED_NAMES, build_parser
from labsession.runs._lifecycle import close, start

__all__ = ["run", "session"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
#: Exit status of a ``@session`` script whose configuration is refused before its run starts
#: (what argparse exits with for a bad argument).
EXIT_CONFIG = 2
_CLOSE_KEYS = ("notify", "archive_format", "message")


def _exit_code(value: object) -> int:
    """The exit status a return value or ``SystemExit.code`` stands for (NumPy integers too)."""
    if value is None or isinstance(value, bool):
        return 1 if value else 0
    try:
        return operator.index(value)  # type: ignore[call-overload]
    except TypeError:
        pass
    if getattr(getattr(value, "dtype", None), "kind", "") == "b":  # a NumPy bool
        return 1 if value else 0
    return 1  # SystemExit("message") exits with 1


def _process_code(exit_status: int) -> int:
    """What the process exits with: the status itself where the system can carry it (0-255),
    else 1, so that no failure reads as success (the system keeps only the low 8 bits: 256
    would exit with 0)."""
    return exit_status if 0 <= exit_status <= 255 else 1


def _call_in_session(
    func: Callable[..., Any],
    call: Callable[[Mapping[str, Any]], Any],
    args: argparse.Namespace | Mapping[str, Any] | None,
    *,
    verbose: bool,
    agg: bool,
    sdir_suffix: str | None,
    notify: bool,
    archive_format: str | None,
    message: str | None,
    start_kwargs: Mapping[str, Any],
    config_error_exits: bool = False,
) -> int:
    """Start a run, inject the globals, ``call`` the function, close the run; return the code.

    With ``config_error_exits``, a :class:`ConfigError` of :func:`start` (raised before any run
    folder is made) is reported as one ``error: ...`` line on stderr and the process exits with
    :data:`EXIT_CONFIG`, as for a bad argument; otherwise it is raised.
    """
    try:
        CONFIG, _out, err, plt, COLORS, rngg = start(
            sys=sys,
            plt=None,
            file=func.__globals__.get("__file__"),
            args=args,
            sdir_suffix=sdir_suffix,
            agg=agg,
            verbose=verbose,
            **start_kwargs,
        )
    except ConfigError as exc:
        if not config_error_exits:
            raise
        sys.stderr.write(f"error: {one_line(str(exc))}\n")
        raise SystemExit(EXIT_CONFIG) from None
    script_logger = logging.getLogger(func.__module__)
    injected = {
        "CONFIG": CONFIG,
        "plt": plt,
        "COLORS": COLORS,
        "rngg": rngg,
        "logger": script_logger,
    }
    func.__globals__.update(injected)
    exit_status = 0
    try:
        exit_status = _exit_code(call(injected))
    except SystemExit as exc:
        exit_status = _exit_code(exc.code)
        code = exc.code
        if code is not None and not isinstance(code, int):  # a message: the interpreter
            if isinstance(code, str):  # prints a str on the terminal itself
                if hasattr(err, "write_log_only"):
                    err.write_log_only(code + "\n")
            elif _exit_code(code) == 1:  # sys.exit(error): printed here, as Python would
                sys.stderr.write(f"{code}\n")
        if exit_status != _process_code(exit_status) or not isinstance(code, int | str | None):
            raise SystemExit(_process_code(exit_status)) from None
        raise
    except BaseException as exc:
        exit_status = 130 if isinstance(exc, KeyboardInterrupt) else 1
        # The interpreter prints the traceback on the terminal when the exception leaves;
        # write it to the log only, so it appears once in each.
        if hasattr(err, "write_log_only"):
            err.write_log_only("".join(traceback.format_exception(exc)))
        raise
    finally:
        close(
            CONFIG,
            message=message or f"{func.__name__} exited with {exit_status}",
            notify=notify,
            verbose=verbose,
            exit_status=exit_status,
            archive_format=archive_format,
        )
    return exit_status


def _kwargs_for(
    func: Callable[..., Any], parsed: Mapping[str, Any], injected: Mapping[str, Any]
) -> dict[str, Any]:
    params = inspect.signature(func).parameters
    kwargs = {k: v for k, v in parsed.items() if k in params}
    kwargs.update({k: injected[k] for k in INJECTED_NAMES if k in params})
    return kwargs


@overload
def session(func: F) -> F: ...
@overload
def session(
    func: None = None,
    *,
    verbose: bool = False,
    agg: bool = True,
    notify: bool = False,
    sdir_suffix: str | None = None,
    archive_format: str | None = None,
    **start_kwargs: Any,
) -> Callable[[F], F]: ...


def session(
    func: F | None = None,
    *,
    verbose: bool = False,
    agg: bool = True,
    notify: bool = False,
    sdir_suffix: str | None = None,
    archive_format: str | None = None,
    **start_kwargs: Any,
) -> F | Callable[[F], F]:
    """Make ``func`` a run-session entry point with a command line built from its signature.

    Parameters
    ----------
    func
        The script's main function (when used as a bare ``@session``).
    verbose
        Log the run's start and end (the script's own ``logger.info`` shows either way).
    agg
        Use matplotlib's non-interactive Agg backend (the default: scripts save figures).
    notify
        Call the notify hook at the end (see :func:`set_notify_hook`).
    sdir_suffix
        Appended to the run folder name (``<ID>-<suffix>``).
    archive_format
        Leave the finished run as one archive (``"tar.gz"``) instead of a folder.
    **start_kwargs
        Passed to :func:`start` (``seed``, ``fig_size_mm``, ``dpi_save``, ...).

    Returns
    -------
    callable
        The wrapper. ``main()`` runs the session and exits the process with the function's
        return code (``None`` -> 0), or with 2 and one ``error: ...`` line on stderr for a
        configuration refused before the run starts (a bad ``config/*.yaml`` or seed: a
        :class:`~labsession.errors.ConfigError` to :func:`run` and :func:`start` callers);
        ``main(x=1)`` calls the plain function.

    Examples
    --------
    >>> from labsession.runs import session
    >>> @session
    ... def main(n_trials: int = 10, shuffle: bool = False) -> int:
    ...     '''Fit the model.
    ...
    ...     Parameters
    ...     ----------
    ...     n_trials
    ...         Trials to simulate.
    ...     '''
    ...     return 0
    >>> main(n_trials=3)  # with arguments: the plain function, no session
    0
    """

    if archive_format is not None:
        archive_path_for(Path("run"), archive_format)  # an unknown format fails here, not at close

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if args or kwargs:
                return f(*args, **kwargs)
            parser = build_parser(f)
            namespace = parser.parse_args()
            code = _call_in_session(
                f,
                lambda injected: f(**_kwargs_for(f, vars(namespace), injected)),
                namespace,
                verbose=verbose,
                agg=agg,
                sdir_suffix=sdir_suffix,
                notify=notify,
                archive_format=archive_format,
                message=None,
                start_kwargs=start_kwargs,
                config_error_exits=True,
            )
            raise SystemExit(_process_code(code))

        wrapper.__wrapped__ = f  # type: ignore[attr-defined]
        wrapper.is_session = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate


def run(
    func: Callable[..., Any],
    parse_args: Callable[[], Any] | Sequence[str] | None = None,
    **kwargs: Any,
) -> int:
    """Run ``func`` in a run session without decorating it; return its exit status.

    Parameters
    ----------
    func
        The main function.
    parse_args
        ``None``: build the command line from ``func``'s signature and call ``func(**options)``.
        A callable (e.g. ``parser.parse_args``): its result (a namespace or mapping) is passed as
        ``func(args)``. A list of strings: parsed with the signature's parser instead of
        ``sys.argv[1:]``.
    **kwargs
        ``verbose``, ``agg``, ``notify``, ``sdir_suffix``, ``archive_format``, ``message`` and
        anything :func:`start` takes.

    Returns
    -------
    int
        The process exit code: the exit status (``None`` returned by ``func`` gives 0), or 1
        for a status the system cannot carry (outside 0-255; ``EXIT_STATUS`` records it as it
        is). Unlike ``@session``, the process does not exit: ``sys.exit(run(main))``.

    Raises
    ------
    ConfigError
        For a bad ``config/*.yaml`` or seed, before any run folder is made (``@session``
        reports it in one line and exits with 2 instead).
    """
    func = inspect.unwrap(func)  # a @session-decorated function runs as its plain self
    options = {"verbose": False, "agg": True, "notify": False, "sdir_suffix": None}
    options.update({k: kwargs.pop(k) for k in list(kwargs) if k in options})
    close_options = {k: kwargs.pop(k, None) for k in _CLOSE_KEYS if k != "notify"}
    if close_options["archive_format"] is not None:
        archive_path_for(Path("run"), close_options["archive_format"])  # before the run starts
    if callable(parse_args):
        args = parse_args()

        def call(injected: Mapping[str, Any]) -> Any:
            return func(args)

    else:
        namespace = build_parser(func).parse_args(
            list(parse_args) if parse_args is not None else None
        )
        args = namespace

        def call(injected: Mapping[str, Any]) -> Any:
            return func(**_kwargs_for(func, vars(namespace), injected))

    try:
        code = _call_in_session(
            func,
            call,
            args,
            verbose=bool(options["verbose"]),
            agg=bool(options["agg"]),
            sdir_suffix=options["sdir_suffix"],
            notify=bool(options["notify"]),
            archive_format=close_options["archive_format"],
            message=close_options["message"],
            start_kwargs=kwargs,
        )
    except SystemExit as exc:
        return _process_code(_exit_code(exc.code))
    return _process_code(code)
