"""How a run shows ``logging`` records: once on the terminal, once in its logs.

During a run, a handler of the run's (:class:`RunLogHandler`, marked ``labsession_run = True``;
one for runs started inside each other) sits on the root logger and shows records from INFO up
on ``sys.stderr`` (the tee, hence ``logs/stderr.log``). It steps aside for every record that a
handler of the script already shows on the terminal: it walks the loggers the record passes (as
``Logger.callHandlers`` does, up to the first one that does not propagate) and looks for a
handler, of a level that lets the record through, whose stream is the terminal: a
``StreamHandler`` (``basicConfig``'s, one on the script's own logger, colorlog's, tqdm's) or a
handler with a rich ``console``. Such a handler writing through the tee puts the record in the
log itself; one that holds the terminal's own stream (``StreamHandler(sys.__stderr__)``)
bypasses the tee, so the run's handler copies its line into the matching log only, in that
handler's format.

``logging.basicConfig`` does nothing when the root logger has a handler, and a script calls it
at the top of ``main`` all the time, after the run put its handler there. For the run,
``logging.basicConfig`` is a wrapper that takes the run's handler off the root for the call and
puts it back after, so the call does what it would do without the run (its level, format, file
or handlers; nothing when the script had configured the root already; ``force=True`` closes the
script's handlers, never the run's).
"""

from __future__ import annotations

import functools
import gc
import logging
import logging.handlers
import sys
from collections.abc import Callable, Iterator
from typing import Any

from labsession.runs._tee import Tee

__all__ = ["RunLogHandler", "install_basic_config", "is_run_handler", "uninstall_basic_config"]

#: The lowest level the run's handler shows by itself (lower ones only when the script says so).
RUN_LOG_LEVEL = logging.INFO


def is_run_handler(handler: logging.Handler) -> bool:
    """Whether ``handler`` is a run's own (marked ``labsession_run``)."""
    return getattr(handler, "labsession_run", False) is True


def _logger_of(record: logging.LogRecord) -> logging.Logger:
    found = logging.Logger.manager.loggerDict.get(record.name)
    return found if isinstance(found, logging.Logger) else logging.getLogger()


def _chain(record: logging.LogRecord) -> Iterator[logging.Handler]:
    """The handlers that get ``record``, in ``Logger.callHandlers``'s order (levels apart)."""
    logger: logging.Logger | None = _logger_of(record)
    while logger is not None:
        yield from logger.handlers
        if not logger.propagate:
            return
        logger = logger.parent


def _stream_of(handler: logging.Handler) -> Any:
    """Where ``handler`` writes: a ``StreamHandler``'s stream, a rich handler's console file
    (None when unknown, or when reading it fails: a ``stream`` property that raises)."""
    try:
        if isinstance(handler, logging.StreamHandler):
            return handler.stream
        console = getattr(handler, "console", None)
        return getattr(console, "file", None) if console is not None else None
    except Exception:  # noqa: BLE001 - the script's handler; never fail its logging call
        return None


def _targets() -> tuple[dict[int, Tee], dict[int, Tee]]:
    """The tees now in ``sys.stdout``/``sys.stderr`` (and the tees they write to, for a run
    inside a run), and the terminal streams behind them, each with the tee whose log it lacks.
    """
    tees: dict[int, Tee] = {}
    terminals: dict[int, Tee] = {}
    for current, original in ((sys.stdout, sys.__stdout__), (sys.stderr, sys.__stderr__)):
        stream: Any = current
        while isinstance(stream, Tee):
            tees[id(stream)] = stream
            stream = stream.terminal
        if isinstance(current, Tee):
            for terminal in (stream, original):
                if terminal is not None:
                    terminals.setdefault(id(terminal), current)
    return tees, terminals


class RunLogHandler(logging.StreamHandler):
    """Shows records from INFO up on the current ``sys.stderr``, unless the script's own
    handlers show them on the terminal already."""

    labsession_run = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        # id(queue) -> (queue, the QueueListeners reading it), for QueueHandlers of the script's
        self._queues: dict[int, tuple[Any, list[Any]]] = {}
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def _behind_queues(
        self, handlers: Iterator[logging.Handler], record: logging.LogRecord
    ) -> Iterator[tuple[logging.Handler, bool]]:
        """``handlers``, with a ``QueueHandler`` replaced by the handlers of the listeners that
        read its queue (they show the record later, in their thread), each with whether its
        level counts (a listener calls its handlers whatever their level unless told to)."""
        for handler in handlers:
            if not isinstance(handler, logging.handlers.QueueHandler):
                yield handler, True
                continue
            if record.levelno < handler.level:
                continue
            for listener in self._listeners(handler):
                respect = getattr(listener, "respect_handler_level", False) is True
                for inner in getattr(listener, "handlers", ()):
                    if isinstance(inner, logging.Handler):
                        yield inner, respect

    def _listeners(self, handler: logging.handlers.QueueHandler) -> list[Any]:
        listener = getattr(handler, "listener", None)  # set by dictConfig (Python 3.12+)
        if listener is not None:
            return [listener]
        queue = getattr(handler, "queue", None)
        known = self._queues.get(id(queue))
        if known is None or known[0] is not queue:  # once per queue and run: a heap walk
            found = [
                referrer
                for referrer in gc.get_referrers(queue)
                if isinstance(referrer, logging.handlers.QueueListener) and referrer.queue is queue
            ]
            known = self._queues[id(queue)] = (queue, found)
        return known[1]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(record)
        except Exception:  # noqa: BLE001 - as logging does: report, never raise
            self.handleError(record)

    def _emit(self, record: logging.LogRecord) -> None:
        # The script's handlers that let the record through and write to a known stream; the
        # streams behind sys.stdout/sys.stderr are looked up only when there is one (most
        # records of a script without handlers of its own, DEBUG ones included, cost little).
        writers = [
            (handler, stream)
            for handler, levelled in self._behind_queues(_chain(record), record)
            if not is_run_handler(handler)
            and (record.levelno >= handler.level or not levelled)
            and (stream := _stream_of(handler)) is not None
        ]
        if not writers and record.levelno < RUN_LOG_LEVEL:
            return
        tees, terminals = _targets() if writers else ({}, {})
        shown = False
        copies: list[tuple[Tee, logging.Handler]] = []
        for handler, stream in writers:
            if id(stream) in tees:
                shown = True
            elif id(stream) in terminals:  # shown, but past the tee: the log lacks it
                shown = True
                copies.append((terminals[id(stream)], handler))
        if not shown:
            if record.levelno >= RUN_LOG_LEVEL:
                super().emit(record)
            return
        for tee, handler in copies:
            try:
                tee.write_log_only(handler.format(record) + "\n")
            except Exception:  # noqa: BLE001 - as logging does: report, never raise
                self.handleError(record)


_ORIGINAL_ATTR = "__labsession_original__"


def install_basic_config() -> None:
    """Make ``logging.basicConfig`` act as if no run handler sat on the root logger."""
    if getattr(logging.basicConfig, _ORIGINAL_ATTR, None) is None:
        logging.basicConfig = _wrap(logging.basicConfig)  # type: ignore[assignment]


def uninstall_basic_config() -> None:
    """Put back the ``logging.basicConfig`` that :func:`install_basic_config` wrapped (unless
    something replaced the wrapper since)."""
    original = getattr(logging.basicConfig, _ORIGINAL_ATTR, None)
    if original is not None:
        logging.basicConfig = original


def _wrap(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def basicConfig(**kwargs: Any) -> None:
        root = logging.getLogger()
        ours = [handler for handler in root.handlers if is_run_handler(handler)]
        for handler in ours:
            root.removeHandler(handler)
        try:
            original(**kwargs)
        finally:
            for handler in ours:
                root.addHandler(handler)

    setattr(basicConfig, _ORIGINAL_ATTR, original)
    return basicConfig
