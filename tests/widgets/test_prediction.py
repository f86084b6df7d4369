"""prediction_panel: each accepted form, odd values, and a real pipeline's prediction."""

import math

import numpy as np
import pytest

from labsession import App, Pipeline, Stream
from labsession.acquisition._context import AppContext
from labsession.sources import SyntheticSource
from labsession.testing import ImguiFrames, wait_until
from labsession.widgets._prediction import (
    REPR_CHARS,
    PredictionPanel,
    interpret_prediction,
    prediction_panel,
)

CLASSES = ["Rest", "Fist", "Open"]


def _draw(prediction, class_names=CLASSES):
    """Draw the function form over two frames; return the view and the vertices drawn."""
    ctx = AppContext(class_names=list(class_names), prediction=prediction)
    with ImguiFrames() as frames:
        for _ in range(2):
            with frames.frame():
                view = prediction_panel(ctx)
        return view, frames.vertex_count


def test_nothing_yet():
    view, _ = _draw(None)
    assert view.text == "no prediction yet"
    assert view.class_name is None


@pytest.mark.parametrize("index", [1, np.int64(1), np.array([1]), "Fist"])
def test_class_index_or_name(index):
    view, _ = _draw(index)
    assert (view.class_index, view.class_name, view.scores) == (1, "Fist", None)


def test_index_beyond_the_names():
    view, _ = _draw(7)
    assert (view.class_index, view.class_name) == (7, "class 7")


@pytest.mark.parametrize(
    "scores",
    [[0.1, 0.7, 0.2], (0.1, 0.7, 0.2), np.array([0.1, 0.7, 0.2]), np.array([[0.1, 0.7, 0.2]])],
    ids=["list", "tuple", "array", "predict_proba-row"],
)
def test_scores_name_the_argmax_and_draw_bars(scores):
    view, vertices = _draw(scores)
    assert (view.class_index, view.class_name) == (1, "Fist")
    np.testing.assert_array_equal(view.scores, [0.1, 0.7, 0.2])
    _, class_only = _draw(1)
    assert vertices > class_only  # the bars are drawn


def test_mapping_class_wins_over_scores():
    view, _ = _draw({"class": 2, "scores": np.array([3.0, -1.0, 2.0])})  # decision values
    assert (view.class_index, view.class_name) == (2, "Open")
    np.testing.assert_array_equal(view.scores, [3.0, -1.0, 2.0])
    view, _ = _draw({"scores": [0.2, 0.3, 0.5]})
    assert view.class_index == 2
    view, _ = _draw({"class": "Rest"})
    assert (view.class_index, view.class_name, view.scores) == (0, "Rest", None)


def test_nan_scores():
    view, _ = _draw([math.nan, 0.4, math.nan])
    assert view.class_index == 1
    assert np.isnan(view.scores[0])
    view, _ = _draw(np.full(3, np.nan))
    assert view.class_index is None
    assert view.text == "every score is NaN: no class"


def test_more_scores_than_names():
    view, _ = _draw([0.1, 0.2, 0.3, 0.4], class_names=["a"])
    assert view.class_name == "class 3"


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


ODD = {
    "ragged-list": [[1, 2], [3]],
    "two-windows-of-scores": [[0.1, 0.9], [0.8, 0.2]],
    "empty-list": [],
    "bool": True,
    "float": 2.5,
    "mapping-without-keys": {"foo": 1},
    "mapping-with-float-class": {"class": 1.5},
    "mapping-with-string-scores": {"scores": "high"},
    "complex-scores": np.array([1 + 2j]),
    "object": object(),
}


@pytest.mark.parametrize("odd", ODD.values(), ids=ODD.keys())
def test_odd_values_show_their_repr(odd):
    view, vertices = _draw(odd)
    assert view.class_name is None
    assert view.class_index is None
    assert view.text == repr(odd)
    assert vertices > 0


def test_odd_values_are_truncated_and_never_raise():
    view, _ = _draw([*range(1000), "x"])
    assert len(view.text) == REPR_CHARS
    assert view.text.endswith("…")
    view, _ = _draw(BrokenRepr())
    assert view.text == "<BrokenRepr: repr failed with RuntimeError>"
    view, _ = _draw("x" * 500)  # a very long class name
    assert len(view.class_name) == REPR_CHARS


def test_interpret_without_class_names():
    view = interpret_prediction(np.array([0.5, 0.25]))
    assert (view.class_index, view.class_name) == (0, "class 0")


def test_shows_the_pipelines_prediction():
    app = App("predict", class_names=CLASSES)
    source = SyntheticSource(n_channels=2, fs=500.0, classes=CLASSES)
    app.streams(Stream("emg", source=source, window_seconds=0.1))
    pipeline = Pipeline(app, stream="emg")

    @pipeline.predict
    def predict(model, window):
        rms = np.sqrt(np.mean(window**2, axis=1))
        return {"class": 2, "scores": np.r_[rms, 1.0]}

    app.start()
    try:
        assert app.wait_connected(5) == []

        assert wait_until(lambda: app.ctx.streams["emg"].n_samples >= 50, timeout=5)
        pipeline.predict_once()
        panel = PredictionPanel()
        with ImguiFrames() as frames, frames.frame():
            view = panel.ui(app.ctx)
    finally:
        for stream in app.ctx.streams.values():
            stream.stop()
    assert view is panel.view
    assert (view.class_index, view.class_name) == (2, "Open")
    assert view.scores.shape == (3,)


def test_docstring_examples_run():
    import doctest

    from labsession.widgets import _prediction as module

    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
