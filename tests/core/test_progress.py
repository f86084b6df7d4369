"""Progress bars: on stderr by default, shown on a terminal or when asked, never otherwise."""

from __future__ import annotations

import io
import re

from rich.console import Console

from labsession.core.progress import make_progress, progress_enabled


def _console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120), buffer


def test_progress_enabled_follows_the_terminal_only_when_not_told():
    pipe, _ = _console(terminal=False)
    tty, _ = _console(terminal=True)
    assert progress_enabled(None, pipe) is False
    assert progress_enabled(None, tty) is True
    assert progress_enabled(True, pipe) is True
    assert progress_enabled(False, tty) is False


def test_default_console_is_stderr():
    assert make_progress().console.stderr is True


def _draw(console: Console, progress: bool | None) -> None:
    with make_progress(unit="recordings", progress=progress, console=console) as bar:
        outer = bar.add_task("stage 1", total=3)
        inner = bar.add_task("rec_0.tif", total=40, unit="frames")
        bar.update(inner, completed=40)
        bar.update(outer, completed=3)


def test_not_a_terminal_draws_nothing_unless_asked():
    pipe, written = _console(terminal=False)
    _draw(pipe, None)
    assert written.getvalue() == ""
    _draw(pipe, True)
    text = written.getvalue()
    assert re.search(r"stage 1 .* 3/3\s+recordings", text)  # the final state, once
    assert re.search(r"rec_0.tif .* 40/40\s+frames", text)  # a task's own unit


def test_false_draws_nothing_even_on_a_terminal():
    tty, written = _console(terminal=True)
    _draw(tty, False)
    assert written.getvalue() == ""
    _draw(tty, None)
    assert "3/3" in written.getvalue()


def test_disable_wins():
    tty, written = _console(terminal=True)
    with make_progress(progress=True, disable=True, console=tty) as bar:
        bar.add_task("x", total=1, completed=1)
    assert written.getvalue() == ""
