import numpy as np
import pytest

from labsession import App, Stream
from labsession.core.clock import local_clock
from labsession.recording import open_session_store
from labsession.sources import LSLSource, SyntheticSource
from labsession.testing import wait_until
from labsession.testing.source_tests import SourceTests


def test_connect_reads_layout_from_the_stream(lsl_name, outlet_factory):
    outlet_factory(lsl_name, "src-" + lsl_name, 10, 500.0)
    source = LSLSource(lsl_name, timeout=5)
    info = source.connect()
    assert (info.n_channels, info.fs, info.dtype.name) == (3, 500.0, "float32")
    assert info.channel_names == ("counter", "double", "const")
    assert source.state == "connected"
    source.close()


def test_missing_stream_times_out_clearly():
    with pytest.raises(TimeoutError, match="no LSL stream named 'no-such-stream'"):
        LSLSource("no-such-stream", timeout=0.2).connect()


def test_every_pushed_sample_recorded_exactly_once(tmp_path, lsl_name, outlet_factory):
    n_total, fs = 3000, 1000.0
    outlet = outlet_factory(lsl_name, "src-" + lsl_name, n_total, fs)
    app = App("lsl-test")
    app.streams(Stream("emg", LSLSource(lsl_name, processing_flags=())))
    app.start()
    assert app.wait_connected(10) == []
    app.start_recording(tmp_path)
    outlet.go()
    outlet.wait_done()
    assert wait_until(lambda: app.ctx.streams["emg"].n_samples >= n_total)
    app.stop_recording()
    app.wait_idle()
    app.ctx.streams["emg"].stop()
    outlet.close()
    with open_session_store(app.ctx.packed[-1]) as store:
        data, ts = store.get_continuous("emg")
    counter = data[:, 0].astype(np.int64)
    np.testing.assert_array_equal(counter, np.arange(n_total))  # each once, in order
    np.testing.assert_array_equal(data[:, 1], 2 * data[:, 0])
    np.testing.assert_allclose(ts, 1000.0 + np.arange(n_total) / fs, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_outlet_lost_and_back_while_other_stream_records(tmp_path, lsl_name, outlet_factory):
    source_id = "src-" + lsl_name
    first = outlet_factory(lsl_name, source_id, 500, 1000.0)
    lsl = LSLSource(lsl_name, processing_flags=(), retry_interval=0.2)
    app = App("lsl-loss")
    app.streams(Stream("emg", lsl), Stream("synth", SyntheticSource(2, 200.0)))
    app.start()
    assert app.wait_connected(10) == []
    app.start_recording(tmp_path)
    first.go()
    first.wait_done()
    assert wait_until(lambda: app.ctx.streams["emg"].n_samples >= 500)
    first.close(kill=True)
    assert wait_until(lambda: lsl.state == "disconnected")
    synth_before = app.ctx.streams["synth"].n_samples
    second = outlet_factory(lsl_name, source_id, 500, 1000.0, start=500)
    assert wait_until(lambda: lsl.state == "connected")
    second.go()
    second.wait_done()
    assert wait_until(lambda: app.ctx.streams["emg"].n_samples >= 1000)
    assert app.ctx.streams["synth"].n_samples > synth_before  # the other stream kept going
    app.stop_recording()
    app.wait_idle()
    for stream in app.ctx.streams.values():
        stream.stop()
    second.close()
    with open_session_store(app.ctx.packed[-1]) as store:
        counter = store.get_continuous("emg")[0][:, 0].astype(np.int64)
        assert store.n_samples("synth") > 0
    np.testing.assert_array_equal(counter, np.arange(1000))


def test_a_recording_started_while_the_outlet_is_down_records_the_outage(
    tmp_path, lsl_name, outlet_factory
):
    # The session's integrity record said nothing of the seconds without data at its start.
    source_id = "src-" + lsl_name
    first = outlet_factory(lsl_name, source_id, 200, 1000.0)
    lsl = LSLSource(lsl_name, processing_flags=(), retry_interval=0.2)
    app = App("lsl-down-at-start")
    app.streams(Stream("emg", lsl))
    app.start()
    assert app.wait_connected(10) == []
    first.go()
    first.wait_done()
    first.close(kill=True)
    assert wait_until(lambda: lsl.state == "disconnected")
    assert wait_until(lambda: not app.ctx.streams["emg"].health.connected)
    app.start_recording(tmp_path)
    second = outlet_factory(lsl_name, source_id, 300, 1000.0, start=200)
    assert wait_until(lambda: lsl.state == "connected")
    second.go()
    second.wait_done()
    assert wait_until(lambda: app.ctx.streams["emg"].n_samples >= 500)
    app.stop_recording()
    app.wait_idle()
    app.ctx.streams["emg"].stop()
    second.close()
    with open_session_store(app.ctx.packed[-1]) as store:
        record = store.integrity("emg")
        counter = store.get_continuous("emg")[0][:, 0]
    assert counter[0] == 200  # nothing from before the outage
    assert record.n_disconnects == 1
    ((lost, back),) = record.disconnects
    assert back is not None  # the outage, closed by the reconnection
    assert back > lost


def test_a_source_silent_when_the_recording_stops_is_recorded(tmp_path, lsl_name, outlet_factory):
    # A device that stops sending without closing (hung) left a clean record: no gap, no
    # disconnect, the effective rate of the seconds it did send.
    outlet = outlet_factory(lsl_name, "src-" + lsl_name, 200, 1000.0)
    lsl = LSLSource(lsl_name, processing_flags=(), retry_interval=0.2)
    app = App("lsl-silent")
    app.streams(Stream("emg", lsl))
    app.start()
    assert app.wait_connected(10) == []
    app.start_recording(tmp_path)
    outlet.go()
    outlet.wait_done()  # the outlet stays open, and sends nothing more
    stream = app.ctx.streams["emg"]
    assert wait_until(lambda: stream.n_samples >= 200)
    assert wait_until(lambda: (stream.health.last_sample_age() or 0.0) > 2.2, timeout=10)
    assert stream.health.connected
    stopped = local_clock()
    app.stop_recording()
    app.wait_idle()
    stream.stop()
    outlet.close()
    with open_session_store(app.ctx.packed[-1]) as store:
        record = store.integrity("emg")
    assert record.n_disconnects == 1
    ((lost, back),) = record.disconnects
    assert back is None  # still silent at the end of the take
    assert stopped - 10 < lost < stopped - 2  # from its last sample on (LSL clock, as faults)


class TestLSLConformance(SourceTests):
    @pytest.fixture
    def source(self, lsl_name, outlet_factory):
        outlet = outlet_factory(lsl_name, "src-" + lsl_name, 100_000, 1000.0)
        source = LSLSource(lsl_name)
        connect = source.connect

        def connect_then_push():  # the outlet starts pushing once an inlet is there
            info = connect()
            outlet.go()
            return info

        source.connect = connect_then_push
        return source


JITTERY_OUTLET = """
import sys, time
import numpy as np
from mne_lsl.lsl import StreamInfo, StreamOutlet

name, n_chunks, fs, chunk = sys.argv[1], int(sys.argv[2]), 2048.0, 32
outlet = StreamOutlet(StreamInfo(name, "EMG", 64, fs, "float32", "src-" + name), chunk_size=chunk)
print("ready", flush=True)
sys.stdin.readline()
data = np.zeros((chunk, 64), np.float32)
t0 = time.perf_counter()
for k in range(n_chunks):
    # On schedule, but every 4th chunk 3 ms late, as a busy acquisition loop pushes them.
    due = t0 + (k + 1) * chunk / fs + (0.003 if k % 4 == 1 else 0.0)
    while (left := due - time.perf_counter()) > 0:
        time.sleep(min(left, 0.001))
    data[:, 0] = np.arange(k * chunk, (k + 1) * chunk)
    outlet.push_chunk(data)  # no timestamps: liblsl stamps the chunk back from its push time
print("done", flush=True)
sys.stdin.readline()
"""


def test_chunks_pushed_without_timestamps_are_stored_strictly_increasing(lsl_name, tmp_path):
    """The issue's case: 64 channels at 2,048 Hz, chunks stamped by liblsl at push time."""
    import subprocess
    import sys

    from labsession.core.clock import local_clock
    from labsession.recording import Session, StreamInfo, open_session_store
    from labsession.recording._integrity import REPAIR_LIMIT_S, REPAIR_STEP_PERIODS

    n_chunks, fs = 128, 2048.0
    proc = subprocess.Popen(
        [sys.executable, "-c", JITTERY_OUTLET, lsl_name, str(n_chunks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    source = LSLSource(lsl_name)  # default processing: clocksync only
    try:
        assert proc.stdout.readline().strip() == "ready"
        source.connect()
        proc.stdin.write("\n")
        proc.stdin.flush()
        chunks, n, deadline = [], 0, local_clock() + 20
        while n < n_chunks * 32 and local_clock() < deadline:
            chunk = source.read()
            if chunk is not None:
                chunks.append(chunk)
                n += chunk[1].size
    finally:
        source.close()
        proc.kill()
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()
    counter = np.concatenate([data[:, 0] for data, _ in chunks]).astype(np.int64)
    np.testing.assert_array_equal(counter, np.arange(n_chunks * 32))
    raw = np.concatenate([ts for _, ts in chunks])

    with Session(tmp_path) as session:  # recorded as the App records each chunk read
        session.init_stream("emg", StreamInfo(chunks[0][0].shape[1], fs, chunks[0][0].dtype))
        for data, ts in chunks:
            session.append("emg", data, ts)
    with open_session_store(session.path) as store:
        stored = store.get_timestamps("emg")
        record = store.integrity("emg")  # as saved in meta.json
    assert record.n_samples == stored.size == raw.size

    steps = np.diff(raw)
    assert np.count_nonzero(steps < 0) >= 1  # liblsl's stamps went backwards ...
    assert record.n_backward_steps == np.count_nonzero(steps < 0)  # ... each one counted
    assert record.max_backward_s == pytest.approx(-steps.min())
    assert record.n_gaps == np.count_nonzero(steps > 0.02)
    assert np.all(np.diff(stored) > 0)  # ... and stored strictly increasing
    shift = stored - raw
    assert shift.min() >= 0
    assert record.max_shift_s == shift.max() <= REPAIR_LIMIT_S
    # No stored stamp is later than the latest source stamp so far, plus the minimum step
    # for each sample since: the repair adds no error beyond liblsl's own push-time lateness.
    latest = np.maximum.accumulate(raw)
    assert np.all(stored <= latest + np.arange(raw.size) * REPAIR_STEP_PERIODS / fs)
    depth = float(np.max(latest - raw))
    assert shift.max() <= depth + raw.size * REPAIR_STEP_PERIODS / fs
    assert record.n_repaired == np.count_nonzero(shift) < raw.size // 4
    assert record.effective_fs == pytest.approx(fs, rel=0.02)


@pytest.mark.parametrize("timeout", [0.2502, 0.2508, 0.5004, 0.7506])
def test_a_stream_not_found_in_time_is_always_a_timeout_error(timeout):
    # A last resolve slice overrunning the time left asked liblsl for a timeout of 0, which it
    # refuses with ValueError (that type means an irregular stream).
    with pytest.raises(TimeoutError, match="found within"):
        LSLSource("labsession-test-never-there", timeout=timeout).connect()
