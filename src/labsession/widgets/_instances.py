"""State behind the function forms of the widgets: one object per place in the ID stack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from imgui_bundle import imgui

__all__ = ["widget_instance"]

T = TypeVar("T")

# Per live context, keyed by id(context): [context object, frame count last seen, {id: widget}].
# Holding the context object keeps nanobind's wrapper (and so its id) stable while it lives.
_BY_CONTEXT: dict[int, list[Any]] = {}


def widget_instance(kind: str, key: str, factory: Callable[[], T]) -> T:
    """The widget object that a function-form call at this place of the frame keeps across frames.

    The function forms (``recording_controls(ctx, ...)``, ``signal_viewer(ctx, "emg")``) keep
    their state in an instance of the class form, created by ``factory`` on the first call and
    found again on later frames by ``kind``, ``key`` and the current imgui ID stack (so two calls
    for the same stream in different windows, or under different ``imgui.push_id``, stay apart).
    """
    context = imgui.get_current_context()
    frame = context.frame_count
    entry = _BY_CONTEXT.get(id(context))
    # A context created where a destroyed one lived gets the same wrapper object back from
    # nanobind; its frame count starting again from zero tells the two apart.
    if entry is None or entry[0] is not context or frame < entry[1]:
        entry = _BY_CONTEXT[id(context)] = [context, frame, {}]
    entry[1] = frame
    instances = entry[2]
    widget_id = imgui.get_id(f"##labsession:{kind}:{key}")
    widget = instances.get(widget_id)
    if widget is None:
        widget = instances[widget_id] = factory()
    return widget
