"""A recording's ``session.log`` (``recording_log``): what it gets, and that it stays closed."""

import logging
import threading

from labsession.motion.session._discover import recording_log


def test_records_inside_go_to_the_log_and_a_late_one_does_not_reopen_it(tmp_path):
    """Another thread may log just as the context ends, through the handler it already holds:
    that record is dropped, and the file is not reopened (a plain FileHandler reopens it in
    append mode, and the open file then leaks)."""
    log = logging.getLogger("labsession.tests.recording_log")
    with recording_log(tmp_path, "session.log") as path:
        handler = logging.getLogger("labsession").handlers[-1]
        log.info("inside")
    late = logging.LogRecord(log.name, logging.INFO, __file__, 1, "late", None, None)
    worker = threading.Thread(target=handler.handle, args=(late,))
    worker.start()
    worker.join()
    assert handler.stream is None  # still closed
    text = path.read_text()
    assert "inside" in text
    assert "late" not in text
    assert handler not in logging.getLogger("labsession").handlers


def test_the_log_is_appended_to_by_a_second_attempt(tmp_path):
    log = logging.getLogger("labsession.tests.recording_log")
    for attempt in ("first", "second"):
        with recording_log(tmp_path, "session.log") as path:
            log.warning("%s attempt", attempt)
    lines = path.read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["first attempt", "second attempt"]
