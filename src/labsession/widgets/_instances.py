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


def widget_instance(kind: str, key: str, factory: Callable[[], T], ctx: Any = None) -> T:
    """The widget object that a function-form call at this place of the frame keeps across frames.

    The function forms (``recording_controls(ctx, ...)``, ``signal_viewer(ctx, "emg")``) keep
    their state in an instance of the class form, created by ``factory`` on the first call and
    found again on later frames by ``kind``, ``key`` and the current imgui ID stack (so two calls
    for the same stream in different windows, or under different ``imgui.push_id``, stay apart).

    With the app's ``ctx`` (an :class:`~labsession.acquisition.AppContext`), the instances of
    this imgui context are forgotten when the app's run ends (``ctx.close_hooks``), so a second
    window in the same process starts with fresh widgets.
    """
    context = imgui.get_current_context()
    frame = context.frame_count
    key_context = id(context)
    entry = _BY_CONTEXT.get(key_context)
    # A context created where a destroyed one lived gets the same wrapper object back from
    # nanobind; its frame count starting again from zero tells the two apart.
    if entry is None or entry[0] is not context or frame < entry[1]:
        entry = _BY_CONTEXT[key_context] = [context, frame, {}, set()]
    entry[1] = frame
    if ctx is not None and id(ctx) not in entry[3]:
        entry[3].add(id(ctx))
        ctx.close_hooks.append(lambda: _forget(key_context, entry))
    instances = entry[2]
    widget_id = imgui.get_id(f"##labsession:{kind}:{key}")
    widget = instances.get(widget_id)
    if widget is None:
        widget = instances[widget_id] = factory()
    return widget


def _forget(key_context: int, entry: list[Any]) -> None:
    entry[2].clear()  # the hook's closure keeps the entry: let go of the widgets at least
    if _BY_CONTEXT.get(key_context) is entry:
        del _BY_CONTEXT[key_context]
