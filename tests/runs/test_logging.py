"""Logging inside a run: each record once on the terminal and once in the logs, whatever the
script set up (real scripts in real subprocesses)."""

from __future__ import annotations

import logging
import sys

import pytest

from labsession.runs import close, is_run_id, start

from .conftest import run_script, write_script

SCRIPT = """
import logging, sys
from labsession.runs import session

MODE = sys.argv[sys.argv.index("--mode") + 1]
mylog = logging.getLogger("myproj")
listener = None


def listen(*handlers):  # records through a queue, shown by a listener's thread
    global listener
    import logging.handlers, queue

    records = queue.Queue()
    listener = logging.handlers.QueueListener(records, *handlers)
    listener.start()
    return logging.handlers.QueueHandler(records)


# Set up before the run starts (at import, as scripts do).
if MODE == "basic-before":
    logging.basicConfig(level=logging.INFO, format="BEFORE %(levelname)s %(message)s")
elif MODE == "nonroot":
    mylog.addHandler(logging.StreamHandler())
elif MODE == "nonroot-no-propagate":
    mylog.addHandler(logging.StreamHandler())
    mylog.propagate = False
elif MODE == "stream-raises":
    import atexit

    class Unreadable(logging.StreamHandler):  # a stream property that raises (until exit)
        broken = True

        @property
        def stream(self):
            if Unreadable.broken:
                raise RuntimeError("no stream")
            return sys.stderr

        @stream.setter
        def stream(self, value):
            pass

        def emit(self, record):
            pass

    mylog.addHandler(Unreadable())
    atexit.register(lambda: setattr(Unreadable, "broken", False))  # before logging.shutdown
elif MODE == "queue-before":
    logging.getLogger().addHandler(listen(logging.StreamHandler()))
elif MODE == "rich-console-before":
    from rich.console import Console
    from rich.logging import RichHandler
    # the terminal's stderr, held by the console before the run swaps the streams
    mylog.addHandler(RichHandler(console=Console(file=sys.stderr), show_time=False))


@session
def main(mode: str = "") -> int:
    if mode == "nonroot-in-main":
        mylog.addHandler(logging.StreamHandler())
    elif mode == "rich-root":
        from rich.logging import RichHandler
        logging.getLogger().addHandler(RichHandler(show_time=False, show_path=False))
    elif mode == "rich-nonroot":
        from rich.logging import RichHandler
        mylog.addHandler(RichHandler(show_time=False, show_path=False))
    elif mode == "file":
        logging.getLogger().addHandler(logging.FileHandler("mine.log"))
    elif mode == "file-nonroot":
        mylog.addHandler(logging.FileHandler("mine.log"))
    elif mode == "basic-in-main":
        logging.basicConfig(level=logging.DEBUG, format="MINE %(levelname)s %(message)s")
    elif mode == "basic-file":
        logging.basicConfig(
            level=logging.DEBUG, filename="mine.log", format="MINE %(levelname)s %(message)s"
        )
    elif mode == "basic-force":
        logging.basicConfig(force=True, level=logging.DEBUG, format="MINE %(message)s")
    elif mode == "basic-handlers":
        logging.basicConfig(
            level=logging.INFO,
            format="MINE %(message)s",
            handlers=[logging.StreamHandler(), logging.FileHandler("mine.log")],
        )
    elif mode == "basic-twice":  # the second call does nothing, as without a run
        logging.basicConfig(level=logging.INFO, format="MINE %(message)s")
        logging.basicConfig(level=logging.DEBUG, format="SECOND %(message)s")
    elif mode == "console-raises":

        class Gone:
            @property
            def file(self):
                raise OSError("console gone")

        class Quiet(logging.Handler):  # not rich, but with a "console" that cannot be read
            console = Gone()

            def emit(self, record):
                pass

        mylog.addHandler(Quiet())
    elif mode == "queue-in-main":
        mylog.addHandler(listen(logging.StreamHandler()))
    elif mode == "queue-file":
        mylog.addHandler(listen(logging.FileHandler("mine.log")))
    elif mode == "raw-terminal":
        mylog.addHandler(logging.StreamHandler(sys.__stderr__))
    mylog.debug("record-debug")
    mylog.info("record-info")
    mylog.warning("record-warning")
    if listener is not None:
        listener.stop()
    return 0


if __name__ == "__main__":
    main()
"""


def _run(tmp_path, mode):
    script = write_script(tmp_path, "logs.py", SCRIPT)
    done = run_script(script, "--mode", mode)
    assert done.returncode == 0, done.stderr
    finished = tmp_path / "logs_out" / "FINISHED_SUCCESS"
    (run,) = [p for p in finished.iterdir() if is_run_id(p.name)]
    logs = {name: (run / "logs" / f"{name}.log").read_text() for name in ("stdout", "stderr")}
    mine = tmp_path / "mine.log"
    return done, logs, mine.read_text() if mine.exists() else None


def _counts(text, *messages):
    return [text.count(message) for message in messages]


@pytest.mark.parametrize(
    ("mode", "stream"),
    [
        ("basic-before", "stderr"),
        ("nonroot", "stderr"),
        ("nonroot-in-main", "stderr"),
        ("nonroot-no-propagate", "stderr"),
        ("rich-root", "stdout"),
        ("rich-nonroot", "stdout"),
        ("rich-console-before", "stderr"),
        ("raw-terminal", "stderr"),
        ("queue-before", "stderr"),
        ("queue-in-main", "stderr"),
        ("queue-file", "stderr"),
        ("file", "stderr"),
        ("file-nonroot", "stderr"),
    ],
)
def test_each_record_shows_once_on_the_terminal_and_once_in_the_logs(tmp_path, mode, stream):
    # A handler on a logger of the script's own ("myproj"), or a RichHandler, printed each
    # record twice on the terminal and in the log: once by it, once by the run's handler.
    done, logs, mine = _run(tmp_path, mode)
    other = "stdout" if stream == "stderr" else "stderr"
    for message in ("record-info", "record-warning"):
        assert getattr(done, stream).count(message) == 1, getattr(done, stream)
        assert getattr(done, other).count(message) == 0, getattr(done, other)
        assert logs[stream].count(message) == 1, logs[stream]
        assert logs[other].count(message) == 0, logs[other]
    if mode.endswith("file") or mode.startswith("file"):  # the script's own file keeps them
        assert _counts(mine, "record-info", "record-warning") == [1, 1]


def test_basic_config_in_main_takes_effect(tmp_path):
    # It did nothing: the run's handler on the root made it a no-op (no DEBUG, not its format).
    done, logs, _ = _run(tmp_path, "basic-in-main")
    for level, message in [("DEBUG", "record-debug"), ("INFO", "record-info")]:
        assert done.stderr.count(message) == 1, done.stderr
        assert f"MINE {level} {message}" in done.stderr
        assert logs["stderr"].count(message) == 1
        assert f"MINE {level} {message}\n" in logs["stderr"]


def test_basic_config_to_a_file_in_main_takes_effect(tmp_path):
    # The file was never created; the terminal still shows the records from INFO up, once.
    done, logs, mine = _run(tmp_path, "basic-file")
    assert mine is not None
    assert "MINE DEBUG record-debug\n" in mine
    assert _counts(mine, "record-debug", "record-info", "record-warning") == [1, 1, 1]
    assert _counts(done.stderr, "record-debug", "record-info", "record-warning") == [0, 1, 1]
    assert _counts(logs["stderr"], "record-debug", "record-info", "record-warning") == [0, 1, 1]


@pytest.mark.parametrize("mode", ["basic-force", "basic-handlers", "basic-twice"])
def test_other_basic_config_calls_in_main_behave_as_without_a_run(tmp_path, mode):
    done, logs, mine = _run(tmp_path, mode)
    assert _counts(done.stderr, "record-info", "record-warning") == [1, 1], done.stderr
    assert _counts(logs["stderr"], "record-info", "record-warning") == [1, 1]
    assert "MINE record-info\n" in logs["stderr"]
    if mode == "basic-force":
        assert "MINE record-debug\n" in logs["stderr"]
    if mode == "basic-handlers":
        assert mine == "MINE record-info\nMINE record-warning\n"
    if mode == "basic-twice":
        assert "record-debug" not in done.stderr
        assert "SECOND" not in done.stderr


def test_runs_in_process_leave_logging_as_they_found_it(tmp_path):
    from rich.console import Console
    from rich.logging import RichHandler

    script = tmp_path / "analysis.py"
    script.write_text("")
    terminal = sys.stderr
    console = Console(file=terminal)
    rich_handler = RichHandler(console=console)
    mylog = logging.getLogger("labsession_test_leaves")
    mylog.addHandler(rich_handler)
    root = logging.getLogger()
    before = (logging.basicConfig, list(root.handlers), root.level)
    try:
        outer, *_ = start(sys=sys, file=script, verbose=False)
        assert console.file is sys.stderr  # the console writes through the tee
        inner, *_ = start(sys=sys, file=script, verbose=False)
        logging.getLogger("labsession_test_nested").warning("nested-record")
        close(inner, verbose=False)
        assert logging.basicConfig is not before[0]  # still wrapped for the outer run
        close(outer, verbose=False)
    finally:
        mylog.removeHandler(rich_handler)
    assert (logging.basicConfig, list(root.handlers), root.level) == before
    assert console.file is terminal
    for run in (inner, outer):  # the inner run's output reaches the outer's log too, once
        assert (run.SDIR_RUN / "logs" / "stderr.log").read_text().count("nested-record") == 1


@pytest.mark.parametrize("mode", ["stream-raises", "console-raises"])
def test_a_handler_whose_stream_cannot_be_read_never_fails_the_script(tmp_path, mode):
    # mylog.info(...) raised the handler's error out of the run's handler into main (exit 1),
    # and a StreamHandler whose stream property raises made close() fail.
    done, logs, _ = _run(tmp_path, mode)
    assert "Traceback" not in done.stderr, done.stderr
    for message in ("record-info", "record-warning"):  # the run's handler shows them
        assert done.stderr.count(message) == 1, done.stderr
        assert logs["stderr"].count(message) == 1


def test_a_root_level_set_in_main_stays_after_the_run(tmp_path):
    # close() put back the level from before the run, undoing basicConfig(level=DEBUG) in main
    # for the rest of the process (atexit handlers, code after main); a level left as the run
    # set it still goes back.
    script = tmp_path / "analysis.py"
    script.write_text("")
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.WARNING)
        config, *_ = start(sys=sys, file=script, verbose=False)
        assert root.level == logging.INFO
        close(config, verbose=False)
        assert root.level == logging.WARNING
        config, *_ = start(sys=sys, file=script, verbose=False)
        root.setLevel(logging.DEBUG)  # as basicConfig(level=DEBUG) in main does
        close(config, verbose=False)
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(before)
