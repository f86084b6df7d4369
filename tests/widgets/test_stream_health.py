"""stream_health: real streams (delivering, failing reads, never connecting) drawn in imgui."""

import dataclasses

import pytest

from labsession import App, Stream
from labsession.acquisition._context import AppContext
from labsession.acquisition._health import StreamHealthSnapshot
from labsession.recording import StreamInfo
from labsession.sources import Source, SyntheticSource
from labsession.testing import ImguiFrames, wait_until
from labsession.widgets._stream_health import StreamHealthPanel, assess_health, stream_health


class FlakySource(SyntheticSource):
    """A synthetic stream whose every third ``read`` raises, as a loose cable does."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.state = "connected"  # mirrored into the stream's health by its thread

    def read(self):
        self.calls += 1
        if self.calls % 3 == 0:
            raise OSError(f"flaky device: read {self.calls} failed")
        return super().read()


class AbsentSource(Source):
    """A device that is never there."""

    def connect(self) -> StreamInfo:
        raise ConnectionError("no device on /dev/ttyEMG0")

    def read(self):
        raise AssertionError("read before connect")


@pytest.fixture
def app():
    app = App("health")
    yield app
    for stream in app.ctx.streams.values():
        stream.stop()


def _row(frames, panel, ctx, name):
    with frames.frame():
        rows = panel.ui(ctx)
    return next(r for r in rows if r.name == name)


def test_connected_synthetic_stream(app):
    app.streams(Stream("emg", source=SyntheticSource(n_channels=4, fs=500.0)))
    app.start()
    assert app.wait_connected(5) == []
    panel = StreamHealthPanel(warmup_s=0.0)
    with ImguiFrames() as frames:
        assert wait_until(lambda: _row(frames, panel, app.ctx, "emg").snapshot.n_samples > 200)
        row = _row(frames, panel, app.ctx, "emg")
        assert frames.vertex_count > 0
    assert row.status == "connected"
    assert row.snapshot.nominal_rate == 500.0
    assert row.snapshot.effective_rate > 0
    assert row.snapshot.last_sample_age is not None
    assert row.snapshot.last_sample_age < 1.0
    for key in ("status", "gaps", "dropped", "backwards", "errors", "age"):
        assert key not in row.problems, row.notes


def test_source_errors_are_reported_and_acquisition_goes_on(app):
    source = FlakySource(n_channels=2, fs=500.0)
    app.streams(Stream("flaky", source=source))
    app.start()
    assert app.wait_connected(5) == []
    panel = StreamHealthPanel()
    with ImguiFrames() as frames:
        assert wait_until(
            lambda: _row(frames, panel, app.ctx, "flaky").snapshot.n_source_errors > 1
        )
        row = _row(frames, panel, app.ctx, "flaky")
        assert row.problems["errors"] == "error"
        assert row.problems["last_error"] == "error"
        assert "OSError: flaky device" in row.snapshot.last_error
        assert "OSError: flaky device" in row.notes["errors"]
        # Acquisition continued after the errors: samples keep arriving.
        before = row.snapshot.n_samples
        assert wait_until(lambda: _row(frames, panel, app.ctx, "flaky").snapshot.n_samples > before)
        assert _row(frames, panel, app.ctx, "flaky").snapshot.n_source_errors >= 2

        # The device reports a disconnect: the row turns red and says it delivered before.
        source.state = "disconnected"
        assert wait_until(lambda: _row(frames, panel, app.ctx, "flaky").status == "disconnected")
        row = _row(frames, panel, app.ctx, "flaky")
        assert row.problems["status"] == "error"
        assert row.snapshot.n_disconnects == 1


def test_stream_that_never_connects(app):
    app.streams(
        Stream("emg", source=SyntheticSource(n_channels=2, fs=200.0)),
        Stream("absent", source=AbsentSource(), connect_retry=0.05),
    )
    app.start()
    assert app.wait_connected(1) == ["absent"]
    with ImguiFrames() as frames:
        with frames.frame():
            rows = stream_health(app.ctx)
        with frames.frame():
            rows_again = stream_health(app.ctx)  # the function form keeps its panel
    assert [r.name for r in rows] == ["emg", "absent"]
    assert [r.name for r in rows_again] == ["emg", "absent"]
    absent = rows_again[1]
    assert absent.status == "not connected"
    assert absent.problems["status"] == "error"
    assert "has not connected yet" in absent.notes["status"]
    assert absent.snapshot.n_samples == 0
    assert absent.snapshot.last_sample_age is None


def test_no_streams_says_so():
    with ImguiFrames() as frames, frames.frame():
        assert stream_health(AppContext()) == []


# -- the pure assessment ---------------------------------------------------------------------------
GOOD = StreamHealthSnapshot(
    connected=True,
    n_samples=10_000,
    nominal_rate=1000.0,
    effective_rate=1000.0,
    n_gaps=0,
    dropped_samples=0,
    n_backwards=0,
    n_disconnects=0,
    n_source_errors=0,
    last_error=None,
    last_sample_age=0.012,
)


@pytest.mark.parametrize(
    ("changes", "judge_rate", "expected"),
    [
        ({}, True, {}),
        ({"effective_rate": 1040.0}, True, {}),  # 4 % off: fine
        ({"effective_rate": 930.0}, True, {"rate": "warn"}),  # 7 % off
        ({"effective_rate": 500.0}, True, {"rate": "error"}),  # half the samples missing
        ({"effective_rate": 500.0}, False, {}),  # the first seconds are not judged
        ({"n_gaps": 2, "dropped_samples": 40}, True, {"gaps": "warn", "dropped": "warn"}),
        ({"n_backwards": 1}, True, {"backwards": "warn"}),
        ({"last_sample_age": 3.0}, True, {"age": "warn"}),
        (
            {"n_source_errors": 1, "last_error": "OSError: x"},
            True,
            {"errors": "error", "last_error": "error"},
        ),
    ],
)
def test_assess_flags_problems(changes, judge_rate, expected):
    row = assess_health(
        "emg", dataclasses.replace(GOOD, **changes), ever_connected=True, judge_rate=judge_rate
    )
    assert row.problems == expected
    assert row.notes.keys() == expected.keys()
    assert row.status == "connected"


def test_assess_disconnected_and_never_connected():
    lost = dataclasses.replace(GOOD, connected=False, n_disconnects=1, effective_rate=0.0)
    row = assess_health("emg", lost, ever_connected=True, judge_rate=True)
    assert row.status == "disconnected"
    assert row.problems == {"status": "error"}  # the rate is not judged while disconnected
    row = assess_health("emg", lost, ever_connected=False, judge_rate=True)
    assert row.status == "not connected"


def test_irregular_streams_have_no_rate_to_judge():
    irregular = dataclasses.replace(GOOD, nominal_rate=0.0, effective_rate=3.0, last_sample_age=60)
    assert assess_health("markers", irregular, ever_connected=True, judge_rate=True).problems == {}


def test_docstring_examples_run():
    import doctest

    from labsession.widgets import _stream_health as module

    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
