"""Stream health: counters computed as samples arrive, from real sources on real threads."""

from __future__ import annotations

import numpy as np
import pytest

from labsession.acquisition import Stream, StreamHealth
from labsession.core.clock import local_clock
from labsession.recording import StreamInfo
from labsession.sources import Source, SyntheticSource
from labsession.testing import wait_until


def test_gaps_backwards_and_dropped_samples_are_counted():
    health = StreamHealth()
    health.on_connected(100.0)
    health.on_chunk(np.arange(10) / 100.0, now=0.0)
    # 5 samples missing between 0.09 and 0.15, then a step back in time.
    health.on_chunk(np.array([0.15, 0.16, 0.155, 0.17]), now=0.1)
    snap = health.snapshot(now=0.1)
    assert snap.n_samples == 14
    assert snap.n_gaps == 1
    assert snap.dropped_samples == 5
    assert snap.n_backwards == 1
    assert snap.last_sample_age == 0.0


def test_a_gap_across_chunks_is_found():
    health = StreamHealth()
    health.on_connected(10.0)
    health.on_chunk(np.array([0.0, 0.1]), now=0.0)
    health.on_chunk(np.array([1.0, 1.1]), now=1.0)
    snap = health.snapshot(now=1.0)
    assert (snap.n_gaps, snap.dropped_samples) == (1, 8)


def test_effective_rate_and_age():
    health = StreamHealth()
    health.on_connected(200.0)
    for k in range(21):  # 20 samples every 0.1 s = 200 Hz
        health.on_chunk(k * 0.1 + np.arange(20) / 200.0, now=k * 0.1)
    snap = health.snapshot(now=2.0)
    assert snap.effective_rate == pytest.approx(200.0, rel=0.02)
    assert snap.n_gaps == 0
    later = health.snapshot(now=10.0)  # nothing arrived for 8 s
    assert later.effective_rate == 0.0
    assert later.last_sample_age == pytest.approx(8.0)


def test_disconnects_count_transitions_only():
    health = StreamHealth()
    assert not health.snapshot().connected
    health.on_connected(100.0)
    health.on_disconnected()
    health.on_disconnected()
    health.on_connected(100.0)
    health.on_disconnected()
    snap = health.snapshot()
    assert snap.n_disconnects == 2
    assert not snap.connected
    assert snap.to_dict()["n_disconnects"] == 2


class FlakySource(Source):
    """Real samples, but every third read raises, as a USB device that hiccups."""

    def __init__(self):
        self.inner = SyntheticSource(2, 500.0)
        self.calls = 0

    def connect(self) -> StreamInfo:
        return self.inner.connect()

    def read(self):
        self.calls += 1
        if self.calls % 3 == 0:
            raise OSError(f"device hiccup {self.calls}")
        return self.inner.read()


def test_a_source_that_raises_is_retried_and_counted():
    stream = Stream("emg", FlakySource())
    stream.max_error_backoff = 0.05
    stream.start()
    try:
        assert stream.wait_connected(10)
        assert wait_until(lambda: stream.health.snapshot().n_source_errors >= 3, 20)
        first = stream.health.snapshot().n_samples
        assert wait_until(lambda: stream.health.snapshot().n_samples > first + 100, 20)
        snap = stream.health.snapshot()
        assert snap.last_error.startswith("OSError: device hiccup")
        assert snap.connected
    finally:
        stream.stop()


def test_a_live_synthetic_stream_is_healthy():
    stream = Stream("emg", SyntheticSource(4, 1000.0))
    stream.start()
    try:
        assert stream.wait_connected(10)
        started = local_clock()
        assert wait_until(lambda: stream.health.snapshot().n_samples >= 2500, 20)
        snap = stream.health.snapshot()
        elapsed = local_clock() - started
        assert snap.nominal_rate == 1000.0
        assert snap.n_gaps == 0
        assert snap.n_backwards == 0
        assert snap.dropped_samples == 0
        assert snap.effective_rate == pytest.approx(1000.0, rel=0.2), elapsed
        assert snap.last_sample_age < 1.0
    finally:
        stream.stop()


@pytest.mark.parametrize("period", [0.25, 0.5, 1.0, 3.0])
def test_effective_rate_holds_between_rare_chunks(period):
    health = StreamHealth()
    health.on_connected(1000.0)
    n = round(1000 * period)
    for k in range(6):
        health.on_chunk(k * period + np.arange(n) / 1000.0, now=k * period)
    last = 5 * period
    for now in (last, last + 0.5 * period, last + 0.99 * period):
        assert health.snapshot(now=now).effective_rate == pytest.approx(1000.0, rel=0.01)
    assert health.snapshot(now=last + period + 2.5).effective_rate == 0.0  # gone quiet


class WrongShapeAfterAWhile(Source):
    """Good samples, then one chunk with a channel too many (a broken driver)."""

    def __init__(self):
        self.inner = SyntheticSource(2, 500.0)
        self.reads = 0

    def connect(self) -> StreamInfo:
        return self.inner.connect()

    def read(self):
        chunk = self.inner.read()
        if chunk is not None:
            self.reads += 1
            if self.reads == 20:
                return np.zeros((chunk[0].shape[0], 3), chunk[0].dtype), chunk[1]
        return chunk


def test_acquisition_that_stops_for_good_shows_in_health():
    # A session refusing a chunk no longer stops acquisition (the stream counts it in
    # append_errors); a chunk the stream itself cannot take does.
    stream = Stream("emg", WrongShapeAfterAWhile())
    stream.start()
    try:
        assert stream.wait_connected(10)
        assert wait_until(lambda: stream.error is not None, 20)
        snap = stream.health.snapshot()
        assert not snap.connected
        assert snap.last_error.startswith("acquisition stopped: ValueError")
        assert snap.integrity.source_errors[-1][1] == snap.last_error
    finally:
        stream.stop()


def test_health_counts_by_the_session_record_rules_with_lsl_times():
    health = StreamHealth()
    before = local_clock()
    health.on_connected(2048.0)
    period = 1 / 2048
    # Chunk jitter of a few ms (liblsl push-time stamps) is neither a gap nor lost samples;
    # a 30 ms jump is a gap.
    health.on_chunk(10.0 + np.arange(32) * period)
    health.on_chunk(10.0 + 0.004 + np.arange(32, 64) * period)
    health.on_chunk(10.0 + 0.002 + np.arange(64, 96) * period)  # 2 ms back
    health.on_chunk(10.0 + 0.032 + np.arange(96, 128) * period)
    health.on_disconnected()
    health.on_source_error(OSError("cable"))
    health.on_connected(2048.0)
    after = local_clock()
    snap = health.snapshot()
    record = snap.integrity
    assert record == health.tracker.snapshot()
    assert (snap.n_gaps, snap.n_backwards, snap.n_disconnects) == (1, 1, 1)
    assert (record.n_gaps, record.n_backward_steps, record.n_disconnects) == (1, 1, 1)
    assert snap.dropped_samples == record.dropped_samples == round((0.030 + period) * 2048) - 1
    assert snap.last_gap == record.gaps[0]
    assert snap.last_gap[1] - snap.last_gap[0] == pytest.approx(0.030 + period)
    assert snap.max_backward_s == pytest.approx(0.002 - period)
    assert record.n_repaired == 0  # health only observes; the session stores repaired stamps
    ((lost, back),) = record.disconnects
    assert before <= lost <= back <= after
    assert record.source_errors[0][1] == "OSError: cable"
    assert before <= record.source_errors[0][0] <= after
