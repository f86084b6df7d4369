"""stop_recording and a read in progress: the samples of a read that began while recording go
into the session, and a read that blocks (a source reconnecting) never holds the stop up.

A hand-fed source on the stream's real acquisition thread, real sessions on disk; the test
decides when a read returns (an Event), and every wait polls a deadline.
"""

import queue
import threading
import time

import numpy as np
import pytest

from labsession import App, Stream
from labsession.recording import StreamInfo, open_session_store
from labsession.sources import Source
from labsession.testing import wait_until

FS = 100.0


class HandFed(Source):
    """Returns the chunks a test hands it, one per read (None while it has none). A chunk
    handed with ``held=True`` is taken by a read that then waits inside ``read`` until
    :attr:`release` is set: a read in progress whose samples are already taken from the device.
    """

    def __init__(self):
        self.chunks: queue.Queue = queue.Queue()
        self.holding = threading.Event()  # a read has taken a held chunk and waits
        self.release = threading.Event()
        self.returned = 0  # chunks returned by read
        self.calls = 0  # reads begun: the one after a chunk begins once it was handled

    def connect(self):
        return StreamInfo(n_channels=1, fs=FS)

    def hand(self, first: int, n: int, *, held: bool = False) -> np.ndarray:
        """Queue samples ``first .. first + n - 1`` (value = index); returns their stamps."""
        ts = 100 + np.arange(first, first + n) / FS
        self.chunks.put((np.arange(first, first + n, dtype=np.float32)[:, None], ts, held))
        return ts

    def read(self):
        self.calls += 1
        try:
            data, ts, held = self.chunks.get(timeout=self.poll_interval)
        except queue.Empty:
            return None
        if held:
            self.holding.set()
            assert self.release.wait(60), "the test never released the read"
        self.returned += 1
        return data, ts


@pytest.fixture
def recording(tmp_path):
    """``(app, stream, source, session)``: a started stream recording into ``tmp_path``."""
    source = HandFed()
    stream = Stream("emg", source)
    stream.start()
    try:
        assert stream.wait_connected(10)
        app = App("detach", base_path=tmp_path)
        app.streams(stream)
        session = app.start_recording()
        yield app, stream, source, session
    finally:
        source.release.set()
        stream.stop()


def stored_stamps(session):
    with open_session_store(session.path) as store:
        return store.get_timestamps("emg"), store.integrity("emg")


def test_a_read_in_progress_when_stop_is_called_is_recorded(recording):
    """Before: stop_recording detached the stream at once, so the samples of a read still
    running (taken from the device before the stop) reached no session, though the stream's
    health counted them; the session ended a chunk early."""
    app, stream, source, session = recording
    stream.detach_wait = 60.0  # the read is released below, well within it
    first = source.hand(0, 10)
    assert wait_until(lambda: source.returned == 1)
    second = source.hand(10, 10, held=True)
    assert source.holding.wait(10)
    stopped = []
    stopper = threading.Thread(target=lambda: stopped.append(app.stop_recording(pack=False)))
    stopper.start()
    try:
        # The stream is detached (no later read is recorded); only then does the read return.
        assert wait_until(lambda: stream._session is None, timeout=10)
        source.release.set()
    finally:
        source.release.set()
        stopper.join(30)
    assert not stopper.is_alive()
    assert stopped == [session]
    assert app.ctx.state == "idle"
    ts, record = stored_stamps(session)
    np.testing.assert_array_equal(ts, np.concatenate([first, second]))
    assert record.n_samples == 20
    assert stream.append_errors == 0


def test_a_read_that_blocks_does_not_hold_the_stop_up(recording):
    """A read still blocked (an LSL source reconnecting) is waited for at most
    ``detach_wait``; what it returns after the stop is recorded nowhere and refused by
    nobody. The next recording gets the samples read after it starts."""
    app, stream, source, session = recording
    first = source.hand(0, 10)
    assert wait_until(lambda: source.returned == 1)
    source.hand(10, 10, held=True)
    assert source.holding.wait(10)
    began = time.monotonic()
    assert app.stop_recording(pack=False) is session
    took = time.monotonic() - began
    assert took < stream.detach_wait + 5, f"stop waited {took:.2f} s for a blocked read"
    ts, record = stored_stamps(session)  # closed and on disk before the read returns
    np.testing.assert_array_equal(ts, first)
    assert record.n_samples == 10
    calls = source.calls
    source.release.set()
    assert wait_until(lambda: source.calls > calls)  # the late chunk was handled
    again = app.start_recording()
    third = source.hand(20, 10)
    assert wait_until(lambda: source.returned == 3)  # the held read was handled before
    app.stop_recording(pack=False)
    np.testing.assert_array_equal(stored_stamps(again)[0], third)
    assert stream.n_samples == 30  # counted by the stream's health, recorded by no session
    assert stream.append_errors == 0


def test_a_session_attached_while_a_detach_waits_does_not_take_the_read(tmp_path):
    """Before: a session attached while detach_session waited for the read of the one
    detached took that read's samples (the read began for the first session, whose detach
    then returned without them). They go to the session the read began for."""
    from labsession.recording import Session

    source = HandFed()
    stream = Stream("emg", source)
    stream.detach_wait = 60.0  # the read is released below, well within it
    first, second = Session(tmp_path / "a"), Session(tmp_path / "b")
    for session in (first, second):
        session.init_stream("emg", StreamInfo(n_channels=1, fs=FS))
    stream.start()
    detached = []
    detacher = threading.Thread(target=lambda: detached.append(stream.detach_session()))
    try:
        assert stream.wait_connected(10)
        stream.attach_session(first)
        calls = source.calls
        assert wait_until(lambda: source.calls > calls)  # a read began for the first session
        held = source.hand(0, 10, held=True)
        assert source.holding.wait(10)
        detacher.start()
        assert wait_until(lambda: stream._session is None, timeout=10)
        stream.attach_session(second)
        source.release.set()
        detacher.join(30)
        assert not detacher.is_alive()
        assert detached == [first]
        later = source.hand(10, 10)
        assert wait_until(lambda: source.returned == 2)
        assert stream.detach_session() is second
    finally:
        source.release.set()
        stream.stop()
        for session in (first, second):
            session.close()
    np.testing.assert_array_equal(stored_stamps(first)[0], held)
    np.testing.assert_array_equal(stored_stamps(second)[0], later)
