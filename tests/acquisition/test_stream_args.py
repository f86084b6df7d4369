"""What a new user gets wrong when making a ``Stream`` or recording, refused at once.

Before, ``Stream("emg", "synthetic")`` was accepted and its thread retried ``'str' object has no
attribute 'connect'`` forever (``stop()`` then raised AttributeError), ``window_seconds=-1`` was
accepted, and ``start_recording()`` of an app with no stream packed an empty take.
"""

from __future__ import annotations

import math

import pytest

from labsession import App, Stream
from labsession.errors import SessionError
from labsession.sources import SyntheticSource, register_source, source_factories
from labsession.sources._base import _FACTORIES


def test_a_registered_source_name_makes_that_source():
    stream = Stream("emg", "synthetic", window_seconds=0.2)
    assert isinstance(stream.source, SyntheticSource)
    stream.start()
    try:
        assert stream.wait_connected(10)
        assert stream.info is not None
        assert stream.info.n_channels == 8
    finally:
        stream.stop()  # raised AttributeError ('str' has no 'close')


def test_a_source_registered_by_the_user_is_found_by_name():
    register_source("two_channels", lambda: SyntheticSource(n_channels=2, fs=100.0))
    try:
        assert isinstance(Stream("emg", "two_channels").source, SyntheticSource)
    finally:
        _FACTORIES.pop("two_channels")


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("synth", ValueError, r"no source is registered as 'synth' \(registered: .*synthetic"),
        ("lsl", ValueError, r"source 'lsl' needs arguments .*LSLSource\('Quattrocento'\)"),
        (SyntheticSource, TypeError, r"got the class SyntheticSource; make one"),
        (5, TypeError, r"source must be a labsession.sources.Source .*got 5 \(type int"),
        (None, TypeError, r"got None \(type NoneType, without connect, read, close\)"),
    ],
)
def test_what_is_no_source_is_refused_naming_it(source, error, message):
    assert "lsl" in source_factories()
    with pytest.raises(error, match=message):
        Stream("emg", source)


@pytest.mark.parametrize("argument", ["window_seconds", "connect_retry"])
@pytest.mark.parametrize("value", [-1, 0, math.nan, math.inf, "1", True])
def test_seconds_that_are_no_positive_duration_are_refused(argument, value):
    with pytest.raises(ValueError, match=rf"{argument} must be a finite number of seconds > 0"):
        Stream("emg", SyntheticSource(), **{argument: value})


def test_numpy_seconds_are_taken():
    np = pytest.importorskip("numpy")
    assert Stream("emg", SyntheticSource(), window_seconds=np.float32(0.5)).window_seconds == 0.5


def test_recording_an_app_with_no_stream_is_refused_before_any_folder(tmp_path):
    app = App("empty", base_path=tmp_path)
    with pytest.raises(SessionError, match=r"not recording: app 'empty' has no stream"):
        app.start_recording()
    assert app.ctx.state == "idle"
    assert app.ctx.session is None
    assert list(tmp_path.iterdir()) == []
