"""A numpy-painted RGBA texture of imgui 1.92's texture system, uploaded column by column."""

from __future__ import annotations

from typing import Any

import numpy as np
from imgui_bundle import imgui, implot

__all__ = ["PlotTexture"]

# Textures registered with each imgui context ({id(context): (context, live, retired)}), kept
# alive while the context may still draw or destroy them (as _instances keeps the widgets).
_TEXTURES: dict[int, tuple[Any, list[Any], list[Any]]] = {}


class PlotTexture:
    """An RGBA texture of ImGui 1.92's texture system, painted in place by the viewer.

    The pixels live in the ``ImTextureData``; after painting, the viewer asks the renderer to
    upload the columns it changed. The texture grows by 256-pixel steps with the plot; an
    outgrown one is handed back to the renderer to destroy (:func:`_collect`).
    """

    def __init__(self) -> None:
        self._tex: Any = None
        self._context: Any = None
        self._registry = _TEXTURES  # still reachable from __del__ at interpreter exit

    @property
    def height(self) -> int:
        """Rows of the texture (at least the plot's height)."""
        return self._tex.height

    def buffer(self, width: int, height: int) -> tuple[np.ndarray, bool]:
        """Pixels ``(rows, row_length)`` uint32 (at least ``height x width``); True if new."""
        from imgui_bundle.imgui import internal

        context = imgui.get_current_context()
        tex, fresh = self._tex, False
        stale = tex is not None and (self._context is not context or not _registered(tex, context))
        if tex is None or stale or tex.width < width or tex.height < height:
            if tex is not None:
                self._retire()
            tex = imgui.ImTextureData()
            tex.create(imgui.ImTextureFormat.rgba32, _round_up(width), _round_up(height))
            internal.register_user_texture(tex)
            _context_textures(context)[1].append(tex)
            self._tex, self._context, fresh = tex, context, True
        _collect(context)
        return tex.get_pixels_array().view(np.uint32).reshape(tex.height, tex.width), fresh

    def commit(self, start: int, count: int, width: int, height: int) -> None:
        """Ask for the upload of ``count`` columns from ``start`` (wrapping at ``width``)."""
        tex = self._tex
        status = tex.status
        if status not in (imgui.ImTextureStatus.ok, imgui.ImTextureStatus.want_updates):
            return  # not created yet: its creation uploads every pixel
        x0, x1 = (start, start + count) if start + count <= width else (0, width)
        if status == imgui.ImTextureStatus.want_updates:  # not uploaded yet: add to it
            x0, x1 = min(x0, tex.update_rect.x), max(x1, tex.update_rect.x + tex.update_rect.w)
        rect = imgui.ImTextureRect()
        rect.x, rect.y, rect.w, rect.h = x0, 0, x1 - x0, height
        tex.updates.clear()
        tex.updates.push_back(rect)
        tex.update_rect = rect
        tex.set_status(imgui.ImTextureStatus.want_updates)

    def draw(self, label: str, lower: tuple, upper: tuple, columns: tuple, v: float) -> None:
        """Plot texture ``columns`` (start, stop) and rows ``0 .. v`` (a fraction) over the
        plot rectangle from ``lower`` (x, y) to ``upper``."""
        w = self._tex.width
        implot.plot_image(
            label,
            self._tex.get_tex_ref(),
            implot.Point(*lower),
            implot.Point(*upper),
            uv0=imgui.ImVec2(columns[0] / w, 0.0),
            uv1=imgui.ImVec2(columns[1] / w, v),
        )

    def forget(self) -> None:
        """Drop the texture and its context's registry entry, once that context is destroyed.

        For the end of an app's run: only Python references go (the pixels are freed with
        them); no imgui function is called. The next :meth:`buffer` creates a new texture.
        """
        context = self._context
        entry = self._registry.get(id(context))
        if context is not None and entry is not None and entry[0] is context:
            del self._registry[id(context)]
        self._tex = self._context = None

    def _retire(self) -> None:
        entry = self._registry.get(id(self._context))
        if entry is not None and entry[0] is self._context and self._tex in entry[1]:
            entry[1].remove(self._tex)
            entry[2].append(self._tex)
        self._tex = self._context = None

    def __del__(self) -> None:
        if self._tex is not None:
            self._retire()


def _registered(tex: Any, context: Any) -> bool:
    """True if ``tex`` is registered with ``context``: a context created where a destroyed one
    lived comes back as the same Python object, and knows none of the old one's textures."""
    return any(known is tex for known in context.user_textures)


def _context_textures(context: Any) -> tuple[Any, list[Any], list[Any]]:
    entry = _TEXTURES.get(id(context))
    if (
        entry is None
        or entry[0] is not context
        or not all(_registered(t, context) for t in entry[1])
    ):
        entry = _TEXTURES[id(context)] = (context, [], [])
    return entry


def _collect(context: Any) -> None:
    """Destroy the retired textures of ``context`` (current), through its renderer if any."""
    from imgui_bundle.imgui import internal

    retired = _context_textures(context)[2]
    for tex in list(retired):
        status = tex.status
        if status in (imgui.ImTextureStatus.want_create, imgui.ImTextureStatus.destroyed):
            internal.unregister_user_texture(tex)  # never created, or destroyed by the renderer
            retired.remove(tex)
        elif status != imgui.ImTextureStatus.want_destroy:
            tex.unused_frames = 1  # renderers destroy only textures unused for a frame
            tex.set_status(imgui.ImTextureStatus.want_destroy)


def _round_up(n: int, step: int = 256) -> int:
    return max(step, -(-n // step) * step)
