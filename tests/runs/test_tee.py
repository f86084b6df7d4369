from __future__ import annotations

import io
import logging
import sys

from labsession.runs._tee import Tee, restore_streams, strip_ansi, swap_streams

RED = "\x1b[31m"
RESET = "\x1b[0m"


def test_terminal_keeps_colours_log_is_clean(tmp_path):
    terminal = io.StringIO()
    tee = Tee(terminal, tmp_path / "out.log")
    tee.write(f"{RED}red{RESET} line\n")
    assert terminal.getvalue() == f"{RED}red{RESET} line\n"
    assert (tmp_path / "out.log").read_text() == "red line\n"
    tee.close()


def test_each_line_reaches_the_file_before_close(tmp_path):
    tee = Tee(io.StringIO(), tmp_path / "out.log")
    tee.write("first")
    assert (tmp_path / "out.log").read_text() == ""  # no newline yet
    tee.write(" half\nsecond ")
    assert (tmp_path / "out.log").read_text() == "first half\n"
    tee.close()
    assert (tmp_path / "out.log").read_text() == "first half\nsecond \n"
    assert tee.closed


def test_carriage_return_keeps_last_state(tmp_path):
    tee = Tee(io.StringIO(), tmp_path / "out.log")
    tee.write("progress 10%\rprogress 100%\n")
    tee.close()
    assert (tmp_path / "out.log").read_text() == "progress 100%\n"


def test_strip_ansi_handles_cursor_codes():
    assert strip_ansi("\x1b[2K\x1b[1A\x1b[1;32mok\x1b[0m") == "ok"


def test_swap_and_restore_streams_retargets_logging(tmp_path):
    before_out, before_err = sys.stdout, sys.stderr
    handler = logging.StreamHandler(sys.stderr)
    log = logging.getLogger("tee_test_logger")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        out, err = swap_streams(tmp_path / "logs")
        sys.stdout.write("to stdout\n")
        log.info("to the log handler")
        restore_streams(out, err)
    finally:
        log.removeHandler(handler)
    assert sys.stdout is before_out
    assert sys.stderr is before_err
    assert handler.stream is before_err
    assert (tmp_path / "logs" / "stdout.log").read_text() == "to stdout\n"
    assert "to the log handler" in (tmp_path / "logs" / "stderr.log").read_text()


def test_write_log_only_skips_terminal(tmp_path):
    terminal = io.StringIO()
    tee = Tee(terminal, tmp_path / "err.log")
    tee.write_log_only("Traceback (most recent call last):\n")
    tee.close()
    assert terminal.getvalue() == ""
    assert (tmp_path / "err.log").read_text().startswith("Traceback")


def test_a_log_that_cannot_be_written_never_fails_the_writes(tmp_path):
    # /dev/full refuses every write with ENOSPC, as a full disk does.
    terminal, warnings = io.StringIO(), io.StringIO()
    tee = Tee(terminal, "/dev/full", warn_to=warnings)
    tee.write("one\ntwo\n")
    tee.write_log_only("a traceback\n")
    tee.write("three")
    tee.flush()
    assert terminal.getvalue() == "one\ntwo\nthree"  # the terminal got everything
    assert warnings.getvalue().count("cannot write /dev/full (No space left on device)") == 1
    assert tee.lost_lines == 3
    tee.close()  # the partial line is the fourth
    assert tee.closed
    assert warnings.getvalue().endswith(
        "labsession: 4 line(s) of output are missing from /dev/full (No space left on device)\n"
    )


def test_lines_ending_in_carriage_return_newline_keep_their_text(tmp_path):
    # csv writes "row\r\n"; a terminal shows "row": so does the log (it was an empty line).
    tee = Tee(io.StringIO(), tmp_path / "out.log")
    tee.write("subject,accuracy\r\nS01,0.93\r\n")
    tee.write("10%\r50%\r\r\n")
    tee.close()
    assert (tmp_path / "out.log").read_text() == "subject,accuracy\nS01,0.93\n50%\n"


def test_osc_sequences_are_stripped_whole():
    link = "\x1b]8;;https://example.org/report\x1b\\the report\x1b]8;;\x1b\\"
    title = "\x1b]0;training epoch 3\x07epoch 3 done"
    assert strip_ansi(f"see {link} for details") == "see the report for details"
    assert strip_ansi(title) == "epoch 3 done"
    assert strip_ansi("\x1b[1;32mok\x1b[0m \x1b]2;t\x1b\\x") == "ok x"
