import numpy as np
import pytest

from labsession import App, Stream
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
