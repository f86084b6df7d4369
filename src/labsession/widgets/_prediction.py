"""The running pipeline's latest prediction: the class, and a bar per class score."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from imgui_bundle import imgui

from labsession.widgets._instances import widget_instance

if TYPE_CHECKING:
    from labsession.acquisition._context import AppContext

__all__ = ["PredictionPanel", "PredictionView", "interpret_prediction", "prediction_panel"]

#: Characters of ``repr(prediction)`` shown for a value of no accepted form.
REPR_CHARS = 120
#: Most score bars drawn (a longer vector is cut, with a note).
MAX_BARS = 64


@dataclass(frozen=True)
class PredictionView:
    """A prediction read into what the panel shows.

    Attributes
    ----------
    class_index
        The predicted class (None: none, or given by name only).
    class_name
        Its name: from the class names, ``"class <i>"`` beyond them, or the name given.
    scores
        Per-class scores ``(n_classes,)`` float64 (NaN kept), or None.
    text
        The line shown when there is no class to name: ``"no prediction yet"``, the truncated
        repr of an odd value, or why the scores name no class.
    """

    class_index: int | None = None
    class_name: str | None = None
    scores: np.ndarray | None = None
    text: str = ""


def _name(index: int, class_names: Sequence[str]) -> str:
    return class_names[index] if 0 <= index < len(class_names) else f"class {index}"


def _is_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _scores(value: Any) -> np.ndarray | None:
    """``value`` as a 1-D float vector (a ``(1, n)`` array counts), or None if it is not one."""
    if isinstance(value, str | bytes | Mapping) or value is None:
        return None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nested lists
        return None
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "biuf":
        return None
    if array.dtype.kind == "b":
        return None
    return array.astype(np.float64)


def _cut(text: str) -> str:
    return text if len(text) <= REPR_CHARS else text[: REPR_CHARS - 1] + "…"


def _odd(value: Any) -> PredictionView:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break the frame
        text = f"<{type(value).__name__}: repr failed with {type(exc).__name__}>"
    return PredictionView(text=_cut(text))


def interpret_prediction(prediction: Any, class_names: Sequence[str] = ()) -> PredictionView:
    """Read a prediction in one of the accepted forms; never raises.

    Accepted forms (what ``@pipeline.predict`` may return):

    - ``None``: no prediction yet.
    - An integer (Python or numpy): the class index, named by ``class_names`` (``"class <i>"``
      beyond them). A length-1 integer array, as ``model.predict(X)`` returns for one window,
      counts as its element.
    - A string: the class name itself (classifiers fitted on names predict names; cut to
      ``REPR_CHARS`` characters).
    - A 1-D sequence or array of real numbers: one score per class (probabilities, decision
      values); the class is the argmax, NaN ignored. A ``(1, n_classes)`` array, as
      ``model.predict_proba(X)`` returns for one window, counts as its row.
    - A mapping with ``"class"`` (an index or a name) and/or ``"scores"`` (as above): the class
      given wins over the argmax of the scores.

    Anything else (booleans, 2-D scores, ragged lists, objects) is shown as its ``repr``, cut to
    ``REPR_CHARS`` characters.

    Parameters
    ----------
    prediction
        The value, e.g. ``ctx.prediction``.
    class_names
        Names of the classes, index order.

    Examples
    --------
    >>> names = ["Rest", "Fist", "Open"]
    >>> interpret_prediction([0.1, 0.7, 0.2], names).class_name
    'Fist'
    >>> interpret_prediction({"class": 2, "scores": [0.3, 0.3, 0.4]}, names).class_index
    2
    >>> interpret_prediction([[1, 2], [3]], names).text
    '[[1, 2], [3]]'
    """
    if prediction is None:
        return PredictionView(text="no prediction yet")
    if _is_index(prediction):
        index = int(prediction)
        return PredictionView(class_index=index, class_name=_name(index, class_names))
    if isinstance(prediction, str):
        index = class_names.index(prediction) if prediction in class_names else None
        return PredictionView(class_index=index, class_name=_cut(prediction))
    if isinstance(prediction, Mapping):
        if not ({"class", "scores"} & prediction.keys()):
            return _odd(prediction)
        scores = None
        if "scores" in prediction:
            scores = _scores(prediction["scores"])
            if scores is None:
                return _odd(prediction)
        if "class" not in prediction:
            return _from_scores(scores, class_names)
        view = interpret_prediction(prediction["class"], class_names)
        if view.class_name is None:
            return _odd(prediction)
        return PredictionView(view.class_index, view.class_name, scores)
    if isinstance(prediction, np.ndarray) and prediction.shape == (1,) and _is_index(prediction[0]):
        return interpret_prediction(prediction[0], class_names)
    scores = _scores(prediction)
    if scores is None:
        return _odd(prediction)
    return _from_scores(scores, class_names)


def _from_scores(scores: np.ndarray | None, class_names: Sequence[str]) -> PredictionView:
    assert scores is not None
    if np.isnan(scores).all():
        return PredictionView(scores=scores, text="every score is NaN: no class")
    index = int(np.nanargmax(scores))
    return PredictionView(index, _name(index, class_names), scores)


def _bar_fractions(scores: np.ndarray) -> np.ndarray:
    """Bar lengths in [0, 1]: the scores when they all lie in [0, 1], else min-max scaled."""
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return np.zeros_like(scores)
    low, high = float(finite.min()), float(finite.max())
    if low >= 0 and high <= 1:
        fractions = scores.copy()
    elif high > low:
        fractions = (scores - low) / (high - low)
    else:
        fractions = np.ones_like(scores)
    fractions[np.isnan(fractions)] = 0.0
    return np.clip(fractions, 0.0, 1.0)


class PredictionPanel:
    """The latest prediction of the running pipeline: the class name, large, and score bars.

    Reads ``ctx.prediction`` (set by ``Pipeline.predict_once``) and ``ctx.class_names``; the
    accepted forms are those of :func:`interpret_prediction`. With per-class scores, one bar per
    class shows its score (as given when every score lies in [0, 1], else scaled between the
    lowest and highest score; the number is written on the bar) and the predicted class is
    highlighted (the other bars are dimmed). A value of no accepted form is shown as its
    truncated ``repr``; the panel never raises.

    Attributes
    ----------
    view
        What the latest frame showed (:class:`PredictionView`).

    Notes
    -----
    The panel has no interactive items, hence no ``###ids``.
    """

    def __init__(self) -> None:
        self.view = PredictionView(text="no prediction yet")

    def ui(self, ctx: AppContext) -> PredictionView:
        """Draw ``ctx.prediction``; return how it was read."""
        class_names = [str(n) for n in (ctx.class_names or ())]
        self.view = view = interpret_prediction(ctx.prediction, class_names)
        if view.class_name is not None:
            imgui.push_font(None, 2.0 * imgui.get_font_size())
            imgui.text_unformatted(view.class_name)
            imgui.pop_font()
            if view.class_index is not None:
                imgui.set_item_tooltip(f"class index {view.class_index}")
        else:
            imgui.text_disabled(view.text)
        if view.scores is not None:
            self._bars(view, class_names)
        return view

    @staticmethod
    def _bars(view: PredictionView, class_names: Sequence[str]) -> None:
        assert view.scores is not None
        scores = view.scores[:MAX_BARS]
        fractions = _bar_fractions(scores)
        names = [_name(i, class_names) for i in range(scores.size)]
        label_width = (
            max(imgui.calc_text_size(n).x for n in names) + imgui.get_style().item_spacing.x
        )
        fill = imgui.get_style_color_vec4(imgui.Col_.plot_histogram)
        dim = imgui.ImVec4(fill.x, fill.y, fill.z, 0.4 * fill.w)
        for i, (name, score, fraction) in enumerate(zip(names, scores, fractions, strict=True)):
            start_x = imgui.get_cursor_pos_x()
            imgui.align_text_to_frame_padding()
            imgui.text_unformatted(name)
            imgui.same_line(start_x + label_width)
            # The predicted class's bar in the theme's colour, the others dimmed.
            imgui.push_style_color(
                imgui.Col_.plot_histogram, fill if i == view.class_index else dim
            )
            overlay = "nan" if math.isnan(score) else f"{score:.3g}"
            imgui.progress_bar(float(fraction), imgui.ImVec2(-1, 0), overlay)
            imgui.pop_style_color()
        if view.scores.size > MAX_BARS:
            imgui.text_disabled(f"... {view.scores.size - MAX_BARS} more scores not shown")


def prediction_panel(ctx: AppContext) -> PredictionView:
    """Draw a :class:`PredictionPanel` for ``ctx`` (one kept per place in the frame).

    The function form of :class:`PredictionPanel`; returns how the prediction was read.
    """
    panel = widget_instance("prediction_panel", "", PredictionPanel, ctx)
    return panel.ui(ctx)
