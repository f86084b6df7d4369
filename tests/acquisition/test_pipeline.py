import threading
import time

import numpy as np
import pytest
from mne_lsl.lsl import StreamInlet, resolve_streams

from labsession import App, Pipeline, Stream
from labsession.sources import SyntheticSource
from labsession.testing import wait_until


def test_train_then_predict_live_into_ctx_and_lsl_outlet():
    source = SyntheticSource(4, 500.0, classes=["Rest", "Fist"])
    app = App("predict")
    app.streams(Stream("emg", source, window_seconds=0.2))
    outlet_name = f"labsession-pred-{time.monotonic_ns()}"
    pipeline = Pipeline(app, stream="emg", rate=20, outlet=outlet_name)

    @pipeline.train
    def train(threshold):
        return threshold

    @pipeline.predict
    def predict(model, window):
        assert window.shape == (4, 100)
        return float(np.sqrt((window**2).mean()) > model)

    pipeline.fit(0.5)
    app.start()
    app.wait_connected(2)
    pipeline.start()
    try:
        deadline = time.monotonic() + 10
        while app.ctx.prediction != 0.0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.ctx.prediction == 0.0  # rest is quiet
        (info,) = resolve_streams(timeout=5, name=outlet_name)
        inlet = StreamInlet(info)
        inlet.open_stream(timeout=5)
        source.set_class(1)
        deadline = time.monotonic() + 10
        while app.ctx.prediction != 1.0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.ctx.prediction == 1.0  # the fist is loud
        got = []
        deadline = time.monotonic() + 5
        while 1.0 not in got and time.monotonic() < deadline:
            data, _ = inlet.pull_chunk(timeout=0.1)
            got.extend(np.asarray(data).ravel().tolist())
        assert 1.0 in got
        inlet.close_stream()
    finally:
        pipeline.stop()
        app.ctx.streams["emg"].stop()
    assert pipeline.n_predictions > 5


def test_pipeline_errors_are_clear():
    app = App("x")
    pipeline = Pipeline(app, stream="emg")
    with pytest.raises(RuntimeError, match=r"@pipeline\.train"):
        pipeline.fit([])
    with pytest.raises(ValueError, match="rate"):
        Pipeline(app, stream="emg", rate=0)


def test_fit_in_background_trains_on_a_thread_and_reports_errors(tmp_path):
    app = App("fit")
    pipeline = Pipeline(app, stream="emg")
    release = threading.Event()

    @pipeline.train
    def train(data):
        assert release.wait(20)
        if data == "bad":
            raise ValueError("no labelled windows")
        return ("model", data)

    thread = pipeline.fit_in_background("good")
    assert pipeline.training
    with pytest.raises(RuntimeError, match="already training"):
        pipeline.fit_in_background("again")
    release.set()
    thread.join(20)
    assert not pipeline.training
    assert pipeline.model == ("model", "good")
    assert pipeline.fit_error is None
    pipeline.fit_in_background("bad").join(20)
    assert isinstance(pipeline.fit_error, ValueError)
    assert pipeline.model == ("model", "good")  # the old model is kept
    assert wait_until(lambda: not pipeline.training)


def test_predictions_wait_for_a_whole_window(tmp_path, caplog):
    """A stream that has just connected holds less than a window: nothing is predicted on it
    (the predict function would see an empty or short window) until it holds a whole one."""
    from labsession.sources import ReplaySource
    from labsession.testing import record_tiny_session

    source = ReplaySource(record_tiny_session(tmp_path), "emg", speed=0, loop=False)  # 100 Hz
    app = App("whole")
    app.streams(Stream("emg", source, window_seconds=0.3))
    pipeline = Pipeline(app, stream="emg", rate=50)
    shapes = []

    @pipeline.predict
    def predict(model, window):
        shapes.append(window.shape)
        return len(shapes)

    app.start()
    stream = app.ctx.streams["emg"]
    try:
        assert app.wait_connected(5) == []
        assert pipeline.predict_once() is None  # no sample yet
        source.step(29)
        assert wait_until(lambda: stream.n_samples == 29, timeout=5)
        assert pipeline.predict_once() is None  # 29 of 30 samples
        assert (shapes, pipeline.n_predictions, app.ctx.prediction) == ([], 0, None)
        with caplog.at_level("ERROR", logger="labsession.acquisition._pipeline"):
            pipeline.start()  # the thread waits too, and logs no error meanwhile
            source.step(1)
            assert wait_until(lambda: pipeline.n_predictions >= 3, timeout=5)
            pipeline.stop()
        assert pipeline.predict_once() == len(shapes)
        assert set(shapes) == {(2, 30)}
        assert not caplog.records
    finally:
        pipeline.stop()
        stream.stop()


def test_a_pipeline_window_longer_than_the_stream_keeps_is_refused(caplog):
    app = App("long")
    app.streams(Stream("emg", SyntheticSource(2, 100.0), window_seconds=0.2))  # keeps 0.4 s
    pipeline = Pipeline(app, stream="emg", window_seconds=1.0)

    @pipeline.predict
    def predict(model, window):
        raise AssertionError("never called")

    app.start()
    try:
        assert app.wait_connected(5) == []
        with pytest.raises(ValueError, match=r"window of 1 s \(100 samples\).*keeps \(40 samples"):
            pipeline.predict_once()
        with caplog.at_level("ERROR", logger="labsession.acquisition._pipeline"):
            pipeline.start()
            pipeline._thread.join(5)
        assert not pipeline._thread.is_alive()  # said once, then stopped
        (record,) = caplog.records
        assert "no predictions" in record.getMessage()
        assert pipeline.n_predictions == 0
    finally:
        pipeline.stop()
        app.ctx.streams["emg"].stop()


@pytest.mark.parametrize(("fs", "ws"), [(2048.0, 0.1), (100.0, 0.29), (1000.0, 0.0015)])
def test_a_pipeline_window_of_twice_the_streams_is_whole(fs, ws):
    """The ring keeps twice the stream's window, rounded as a window is: a pipeline window of
    that length is whole (int() dropped its last sample at 2048 Hz x 0.1 s, 100 Hz x 0.29 s)."""
    app = App("r")
    app.streams(Stream("emg", SyntheticSource(2, fs), window_seconds=ws))
    p = Pipeline(app, stream="emg", window_seconds=2 * ws)
    p.predict(lambda model, window: window.shape[-1])
    app.start()
    s = app.ctx.streams["emg"]
    try:
        assert app.wait_connected(5) == []
        assert wait_until(lambda: s.n_samples > s.ring.capacity + 2, timeout=5)
        assert p.predict_once() == s.window_samples(2 * ws) == s.ring.capacity
    finally:
        s.stop()


def test_a_pipeline_whose_stream_is_added_later_predicts_once_it_connects(caplog):
    # Its thread died with a KeyError, and a stream added later never got predictions.
    app = App("late stream")
    app.streams(Stream("emg", SyntheticSource(2, 200.0), window_seconds=0.5))
    pipeline = Pipeline(app, stream="eeg", rate=20.0, window_seconds=0.1)
    pipeline.predict(lambda model, window: 1)
    app.start()
    pipeline.start()
    try:
        assert wait_until(lambda: "no stream 'eeg' in the app (emg)" in caplog.text)
        assert pipeline.n_predictions == 0
        app.add_stream(Stream("eeg", SyntheticSource(2, 200.0), window_seconds=0.5))
        assert wait_until(lambda: pipeline.n_predictions > 0, timeout=20)
    finally:
        pipeline.stop()
        for stream in app.ctx.streams.values():
            stream.stop()
    assert "Traceback" not in caplog.text
