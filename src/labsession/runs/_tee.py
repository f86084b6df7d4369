"""Tee a text stream to the terminal and a log file, line by line, without ANSI codes in the log.

The terminal receives every write unchanged (colours included, and ``isatty`` answers for the
terminal, so libraries keep colouring). The log receives complete lines with ANSI escape codes
removed, written and flushed to the operating system as each line ends, so a process killed with
SIGKILL loses no finished line. Progress bars that redraw with ``\\r`` keep only their last state
in the log.

A log that cannot be written (a full disk, a vanished network share) never fails the script's
own writes: the terminal still gets every line, a warning says once that the log falls behind,
and the log, as soon as it can be written again, records how many lines it is missing and why.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

__all__ = ["ANSI_PATTERN", "Tee", "strip_ansi"]

logger = logging.getLogger(__name__)

#: Escape sequences as terminals interpret them: OSC strings (window titles, hyperlinks), ended
#: by BEL or ST (or cut short by the next escape), CSI sequences (colours, cursor moves), and
#: the other two-character escapes.
ANSI_PATTERN = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])"
)


def strip_ansi(text: str) -> str:
    """Return ``text`` without ANSI escape sequences."""
    return ANSI_PATTERN.sub("", text)


def _last_carriage_state(line: str) -> str:
    # "50%\r100%" shows "100%" on a terminal; keep what the reader saw last. A carriage return
    # ending the line ("row\r\n", as csv and Windows text end lines) moves the cursor only.
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[-1] if "\r" in line else line


class Tee(io.TextIOBase):
    """A writable text stream that copies to ``stream`` and appends clean lines to ``log_path``.

    Parameters
    ----------
    stream
        The terminal stream (``sys.stdout`` or ``sys.stderr`` before the swap).
    log_path
        The log file; created (truncated) on open.
    warn_to
        Where the one warning about a log that cannot be written goes (default: ``stream``).

    Notes
    -----
    Output written straight to the file descriptor (C extensions, child processes) bypasses
    Python's ``sys.stdout`` and reaches the terminal only.
    """

    def __init__(
        self,
        stream: TextIO,
        log_path: str | os.PathLike[str],
        *,
        warn_to: TextIO | None = None,
    ) -> None:
        super().__init__()
        self._stream = stream
        self.log_path = Path(log_path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.log_path, flags, 0o666)
        self._closed = False
        self._pending = ""
        # Re-entrant: a signal handler that prints runs on a thread that may hold it already.
        self._lock = threading.RLock()
        # Lines that could not be written, the first reason, and whether a line was cut short.
        self._lost_lines = 0
        self._lost_reason = ""
        self._torn = False
        self._warned = False
        self._warn_to = warn_to if warn_to is not None else stream

    # --- the stream interface -------------------------------------------------------------
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._stream, "errors", None)

    @property
    def terminal(self) -> TextIO:
        """The stream the tee forwards to."""
        return self._stream

    @property
    def buffer(self) -> Any:
        """The terminal's binary buffer (bytes written there bypass the log)."""
        return self._stream.buffer

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (AttributeError, ValueError):
            return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def write(self, text: str) -> int:  # type: ignore[override]
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with contextlib.suppress(ValueError):  # a closed terminal: the log still gets the line
            self._stream.write(text)
        self._write_log(text)
        return len(text)

    def flush(self) -> None:
        # Each line is written to the operating system as it ends: only the terminal buffers.
        with contextlib.suppress(ValueError):
            self._stream.flush()

    def write_log_only(self, text: str) -> None:
        """Append ``text`` to the log without showing it on the terminal (e.g. a traceback
        that the interpreter will print itself)."""
        self._write_log(text)

    def close(self) -> None:
        """Write a pending partial line, flush and close the log (the terminal stays open)."""
        with self._lock:
            if self._closed:
                return
            if self._pending:
                self._append(strip_ansi(_last_carriage_state(self._pending)) + "\n")
                self._pending = ""
            elif self._lost_lines:
                self._append("")  # the gap, noted in the log if it can be written now
            self._closed = True
            try:
                os.close(self._fd)
            except OSError as exc:  # a network file system reports late write errors here
                self._fell_behind(exc, 0)
            if self._lost_lines:
                self._say(
                    f"labsession: {self._lost_lines} line(s) of output are missing from "
                    f"{self.log_path} ({self._lost_reason})\n"
                )
        super().close()

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self._closed

    @property
    def lost_lines(self) -> int:
        """Lines shown on the terminal that the log could not record (and has not noted yet)."""
        return self._lost_lines

    # --- the log side ---------------------------------------------------------------------
    def _write_log(self, text: str) -> None:
        with self._lock:
            if self._closed:
                return
            data = self._pending + text
            if "\n" not in data:
                self._pending = data
                return
            head, _, self._pending = data.rpartition("\n")
            lines = (strip_ansi(_last_carriage_state(line)) for line in head.split("\n"))
            self._append("\n".join(lines) + "\n")

    def _append(self, text: str) -> None:
        """Write whole lines to the log's file (to the OS: they survive SIGKILL of this process);
        on failure count them as lost instead of raising (the lock is held)."""
        if self._lost_lines:
            note = (
                f"{chr(10) if self._torn else ''}[labsession: {self._lost_lines} line(s) of "
                f"output could not be written to this log here ({self._lost_reason})]\n"
            )
            try:
                self._write_all(note.encode())
            except _PartlyWritten as part:
                self._fell_behind(part.error, text.count("\n"))
                self._torn = self._torn or part.written > 0
                return
            self._lost_lines, self._torn = 0, False
        payload = text.encode("utf-8", "replace")
        try:
            self._write_all(payload)
        except _PartlyWritten as part:
            self._fell_behind(part.error, payload.count(b"\n", part.written))
            self._torn = self._torn or part.written > 0

    def _write_all(self, data: bytes) -> None:
        written = 0
        while written < len(data):
            try:
                written += os.write(self._fd, data[written:])
            except OSError as exc:
                raise _PartlyWritten(exc, written) from exc

    def _fell_behind(self, error: OSError, lines: int) -> None:
        if not self._lost_lines:
            self._lost_reason = error.strerror or str(error)
        self._lost_lines += lines
        if not self._warned:
            self._warned = True
            self._say(
                f"labsession: cannot write {self.log_path} ({error.strerror or error}); output "
                f"still reaches the terminal, and the log will say how many lines it misses\n"
            )

    def _say(self, text: str) -> None:
        with contextlib.suppress(Exception):  # a closed or broken terminal: nothing to tell
            self._warn_to.write(text)
            self._warn_to.flush()


class _PartlyWritten(OSError):
    """A write that failed after ``written`` bytes of the data went out."""

    def __init__(self, error: OSError, written: int) -> None:
        super().__init__(error.errno, error.strerror)
        self.error, self.written = error, written


def swap_streams(log_dir: str | os.PathLike[str]) -> tuple[Tee, Tee]:
    """Replace ``sys.stdout``/``sys.stderr`` by tees logging to ``log_dir/{stdout,stderr}.log``.

    Logging handlers that wrote to the old streams are pointed at the tees (a ``StreamHandler``'s
    stream, a rich handler's console file). Undo with :func:`restore_streams`.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    out = Tee(sys.stdout, log_dir / "stdout.log", warn_to=sys.stderr)
    err = Tee(sys.stderr, log_dir / "stderr.log")
    _retarget_handlers({id(sys.stdout): out, id(sys.stderr): err})
    sys.stdout, sys.stderr = out, err
    return out, err


def restore_streams(out: Tee, err: Tee) -> None:
    """Undo :func:`swap_streams`: flush and close the logs, put the terminal streams back."""
    for tee in (out, err):
        try:
            tee.flush()
        except (OSError, ValueError) as exc:  # pragma: no cover - disk full at the very end
            logger.warning("could not flush %s: %s", tee.log_path, exc)
    _retarget_handlers({id(out): out.terminal, id(err): err.terminal})
    if sys.stdout is out:
        sys.stdout = out.terminal
    if sys.stderr is err:
        sys.stderr = err.terminal
    out.close()
    err.close()


def _retarget_handlers(mapping: dict[int, TextIO]) -> None:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            try:
                _retarget(handler, mapping)
            except Exception:  # noqa: BLE001 - a handler of the script's whose stream property
                continue  # raises: it stays as it is, and the run starts and closes all the same


def _retarget(handler: logging.Handler, mapping: dict[int, TextIO]) -> None:
    stream = getattr(handler, "stream", None)
    if isinstance(handler, logging.StreamHandler) and id(stream) in mapping:
        handler.setStream(mapping[id(stream)])
    # A rich handler's console given a file (Console(file=sys.stderr)) keeps it in
    # ``_file``; one given none follows sys.stdout/sys.stderr by itself.
    console = getattr(handler, "console", None)
    held = vars(console).get("_file") if hasattr(console, "__dict__") else None
    if held is not None and id(held) in mapping:
        console.file = mapping[id(held)]
