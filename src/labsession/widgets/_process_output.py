"""Plumbing of :class:`~labsession.widgets.ProcessLauncher`: bounded output and process groups.

:class:`OutputBuffer` keeps the last lines a child wrote in bounded memory, whatever it writes
(300 MB without a newline, invalid UTF-8); :class:`OutputReader` feeds one from the child's pipe
on a thread of its own. :data:`GROUP_KWARGS` starts the child in a process group of its own, and
:func:`signal_group` / :func:`group_alive` reach that whole group, so grandchildren end with it.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import IO, Any

__all__ = [
    "GROUP_KWARGS",
    "MAX_LINE_CHARS",
    "READER_GRACE",
    "OutputBuffer",
    "OutputReader",
    "end_group",
    "group_alive",
    "signal_group",
]

log = logging.getLogger(__name__)

CHUNK = 65536  # bytes read from the pipe at once
MAX_LINE_CHARS = 4096  # characters kept of one line; the rest is counted, not kept
_POLL = 0.1  # seconds between checks whether the reader should give up
READER_GRACE = 0.5  # seconds the reader waits for end of file once the process group is gone

# Popen arguments that make the child lead a process group of its own (its children join it).
GROUP_KWARGS: dict[str, Any] = (
    {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    if sys.platform == "win32"
    else {"start_new_session": True}
)


class OutputBuffer:
    """The last ``max_lines`` lines of a child's output, each cut to ``max_line_chars``.

    Bytes are decoded as UTF-8 (invalid bytes become U+FFFD); ``\\n``, ``\\r\\n`` and a lone
    ``\\r`` end a line. A longer line keeps its first ``max_line_chars`` characters followed by
    ``"… [N more characters]"``. The line being written (no newline yet) shows last, cut the same
    way. Memory stays bounded whatever the child writes. One thread feeds, any thread reads.
    """

    def __init__(
        self, max_lines: int, max_line_chars: int = MAX_LINE_CHARS, first_line: str | None = None
    ):
        if max_lines < 1:
            raise ValueError(f"max_lines must be >= 1, got {max_lines}")
        self.max_lines = max_lines
        self.max_line_chars = max_line_chars
        self._lines: deque[str] = deque(maxlen=max_lines)
        if first_line is not None:
            self._lines.append(first_line)
        self._lock = threading.Lock()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""  # kept start of the unfinished line
        self._dropped = 0  # characters of the unfinished line past max_line_chars
        self._after_cr = False  # the last text ended with "\r": a leading "\n" belongs to it

    def feed(self, data: bytes) -> None:
        """Add bytes the child wrote."""
        self._add(self._decoder.decode(data))

    def finish(self) -> None:
        """End of output: decode what is left and keep the unfinished line as a line."""
        self._add(self._decoder.decode(b"", final=True))
        with self._lock:
            if self._partial or self._dropped:
                self._lines.append(self._take())

    def lines(self) -> list[str]:
        """The kept lines, the unfinished one last (at most ``max_lines`` in all)."""
        with self._lock:
            lines = list(self._lines)
            if self._partial or self._dropped:
                if len(lines) == self.max_lines:
                    del lines[0]
                lines.append(self._current())
        return lines

    def _add(self, text: str) -> None:
        if not text:
            return
        if self._after_cr and text[0] == "\n":
            text = text[1:]
        self._after_cr = text.endswith("\r")
        *complete, rest = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        with self._lock:
            if len(complete) > self.max_lines:  # the earlier lines would scroll out at once
                self._partial, self._dropped = "", 0
                complete = complete[-self.max_lines :]
            for piece in complete:
                self._extend(piece)
                self._lines.append(self._take())
            self._extend(rest)

    def _extend(self, piece: str) -> None:
        room = self.max_line_chars - len(self._partial)
        if room > 0:
            self._partial += piece[:room]
        self._dropped += max(0, len(piece) - max(room, 0))

    def _current(self) -> str:
        if self._dropped:
            return f"{self._partial}… [{self._dropped} more characters]"
        return self._partial

    def _take(self) -> str:
        line = self._current()
        self._partial, self._dropped = "", 0
        return line


class OutputReader(threading.Thread):
    """Feed ``buffer`` from the pipe ``stream`` in raw chunks until end of file; then close it.

    End of file comes once every process holding the pipe's write end has ended. One that left
    the child's process group (a daemon) may hold it for ever: :meth:`give_up_after` bounds the
    wait (POSIX; on Windows the daemon thread stays blocked until the pipe closes).
    """

    def __init__(self, stream: IO[bytes], buffer: OutputBuffer, name: str):
        super().__init__(name=name, daemon=True)
        self.stream = stream
        self.buffer = buffer
        self._give_up_at: float | None = None

    def give_up_after(self, seconds: float) -> None:
        """Stop reading ``seconds`` from now, end of file or not (an earlier limit stays)."""
        deadline = time.monotonic() + seconds
        if self._give_up_at is None or deadline < self._give_up_at:
            self._give_up_at = deadline

    def _given_up(self) -> bool:
        return self._give_up_at is not None and time.monotonic() >= self._give_up_at

    def run(self) -> None:
        fd = self.stream.fileno()
        try:
            if sys.platform == "win32":  # no select() on pipes
                while chunk := os.read(fd, CHUNK):
                    self.buffer.feed(chunk)
                return
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                while not self._given_up():
                    if selector.select(_POLL):
                        chunk = os.read(fd, CHUNK)
                        if not chunk:
                            break
                        self.buffer.feed(chunk)
        except (OSError, ValueError):  # the pipe closed under us at exit
            pass
        finally:
            self.buffer.finish()
            self.stream.close()


def signal_group(proc: subprocess.Popen[bytes], *, kill: bool) -> None:
    """Send SIGTERM (``kill``: SIGKILL) to the process group ``proc`` leads: to its children too.

    Falls back to ``proc`` alone when that fails (``proc`` moved to another group). On Windows,
    which has no such signals, ends the process tree with ``taskkill /F /T`` either way (as
    forceful as ``Popen.terminate`` there).
    """
    if sys.platform == "win32":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(proc.pid)],
                capture_output=True,
                timeout=10,
                check=False,
                creationflags=subprocess.CREATE_NO_WINDOW,
            )
        with contextlib.suppress(OSError):
            proc.kill()
        return
    sig = signal.SIGKILL if kill else signal.SIGTERM
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        with contextlib.suppress(OSError):
            proc.send_signal(sig)  # does nothing once proc has been reaped


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member still running (Linux: zombies don't count).

    Always False on Windows, which has no process groups to ask.
    """
    if sys.platform == "win32":
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc/self"):
        return True
    # Killed grandchildren are zombies until their new parent reaps them, which an init that
    # does not reap (some containers) never does: look at the members' states.
    with os.scandir("/proc") as entries:
        pids = [entry.name for entry in entries if entry.name.isdigit()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def end_group(
    proc: subprocess.Popen[bytes],
    reader: OutputReader | None,
    timeout: float,
    *,
    label: str,
    terminated: bool = False,
) -> int:
    """End ``proc`` and its process group; return ``proc``'s exit status.

    SIGTERM to the group (unless ``terminated``: sent already), then SIGKILL to what is left of
    it after ``timeout`` s. Once ``proc`` has exited by itself, its group is ended only while
    ``reader`` still reads (its children hold the pipe). Then ``reader`` stops waiting for end
    of file within :data:`READER_GRACE` s.
    """
    deadline = time.monotonic() + timeout
    running = proc.poll() is None
    group = running or (reader is not None and reader.is_alive())
    if group and not terminated:
        signal_group(proc, kill=False)
    if running:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "%s (pid %d) ignored SIGTERM for %.1f s; killing it", label, proc.pid, timeout
            )
            signal_group(proc, kill=True)
    code = proc.wait()
    if group:  # its children, which may take longer than it or ignore SIGTERM
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if group_alive(proc.pid):
            log.warning("children of %s (pid %d) outlived it; killing them", label, proc.pid)
            signal_group(proc, kill=True)
    if reader is not None:  # a process that left the group may hold the pipe for ever
        reader.give_up_after(READER_GRACE)
    return code
