"""A grid of panels: ``with grid[r, c]:`` draws into one cell, ``grid[0:2, 1]`` spans cells."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from numbers import Real
from typing import Any

from imgui_bundle import imgui

__all__ = ["Grid", "GridCell", "layout_tracks"]

#: One cell rectangle ``(x, y, width, height)`` in pixels, relative to the grid's top-left corner.
Rect = tuple[float, float, float, float]


def _check_sizes(sizes: Sequence[float] | None, n: int, name: str, axis: str) -> list[float]:
    """Validate ``sizes`` (``None``: equal fractions) for ``n`` tracks; return them as floats."""
    if sizes is None:
        return [1.0 / n] * n
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence):
        raise ValueError(f"{name} must be a sequence of {n} sizes, got {sizes!r}")
    if len(sizes) != n:
        raise ValueError(f"{name} must have one size per {axis} ({n}), got {len(sizes)}: {sizes!r}")
    checked = []
    for i, size in enumerate(sizes):
        if isinstance(size, bool) or not isinstance(size, Real) or not math.isfinite(size):
            ok = False
        else:
            ok = size > 0
        if not ok:
            raise ValueError(
                f"{name}[{i}] must be a size in pixels (> 1) or a fraction (0 < x <= 1) of the "
                f"available {'height' if axis == 'row' else 'width'}, got {size!r}"
            )
        checked.append(float(size))
    return checked


def layout_tracks(
    total: float, sizes: Sequence[float], spacing: float = 0.0
) -> list[tuple[int, int]]:
    """Offsets and lengths of a grid's rows (or columns) along ``total`` pixels.

    Sizes above 1 are pixels; sizes in ``(0, 1]`` are fractions of the space left after the pixel
    sizes and the ``spacing`` between tracks. Fractions adding up to more than 1 are scaled down
    to fill that space exactly (``[1, 1]`` is two halves, ``[260, 1]`` is 260 px and the rest).
    Edges are rounded down to whole pixels, so no track reaches past ``total``; a track never gets
    less than 1 pixel (imgui reads a size of 0 as "fill the rest").

    Parameters
    ----------
    total
        Length available (pixels), e.g. ``imgui.get_content_region_avail().x``.
    sizes
        One size per track, validated by :class:`Grid`.
    spacing
        Pixels between consecutive tracks.

    Returns
    -------
    list of (offset, length)
        Per track, in pixels from the start of ``total``.
    """
    n = len(sizes)
    pixels = sum(s for s in sizes if s > 1)
    fractions = [s for s in sizes if s <= 1]
    left = max(0.0, total - spacing * (n - 1) - pixels)
    scale = 1.0 / max(1.0, sum(fractions))
    tracks = []
    start = 0.0
    for size in sizes:
        length = size if size > 1 else size * scale * left
        # The epsilon keeps float error (0.3 * x + 0.7 * x < x) from losing the last pixel.
        first, end = math.floor(start + 1e-6), math.floor(start + length + 1e-6)
        tracks.append((first, max(1, end - first)))
        start += length + spacing
    return tracks


def _index(key: Any, n: int, axis: str) -> tuple[int, int]:
    """``(start, stop)`` of the tracks an int or a step-1 slice selects out of ``n``."""
    plural = f"{axis}s" if n != 1 else axis
    if isinstance(key, slice):
        if key.step not in (None, 1):
            raise ValueError(f"{axis} slice {key!r} must have step 1, got step {key.step!r}")
        bounds = []
        for value, default in ((key.start, 0), (key.stop, n)):
            if value is None:
                bounds.append(default)
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{axis} slice bounds must be integers, got {value!r}")
            if not -n <= value <= n:
                raise ValueError(
                    f"{axis} slice bound {value} is out of range for a grid of {n} {plural}"
                )
            bounds.append(value + n if value < 0 else value)
        start, stop = bounds
        if start >= stop:
            raise ValueError(f"{axis} slice {key.start}:{key.stop} selects no {axis} of {n}")
        return start, stop
    if isinstance(key, bool) or not isinstance(key, int):
        raise ValueError(f"{axis} index must be an integer or a slice, got {key!r}")
    if not -n <= key < n:
        raise ValueError(
            f"{axis} index {key} is out of range for a grid of {n} {plural} (0..{n - 1})"
        )
    start = key + n if key < 0 else key
    return start, start + 1


@dataclass(frozen=True)
class _Frame:
    """Where a grid sits in one frame: its top-left cursor position and available size."""

    origin: tuple[float, float]
    available: tuple[float, float]


class Grid:
    """Lay panels out in rows and columns of child windows: ``with grid[r, c]: ...``.

    Each cell is an imgui child window placed with ``imgui.set_cursor_pos`` and sized from the
    content region available where the grid is first used in a frame (the region is measured
    once per frame and per place in the ID stack, so the cells of one frame line up whatever
    order they are drawn in). ``grid[0, 0:2]`` spans columns 0 and 1; negative indices count
    from the end. The grid fills the region it was first used in: draw other content before the
    grid or inside its cells.

    A Grid holds no per-frame state that goes stale: create it once at module level (as the
    seeds do) or anew each frame; both draw the same.

    Parameters
    ----------
    rows, cols
        Number of rows and columns (>= 1).
    row_heights, col_widths
        One size per row / column: a number > 1 is pixels, a number in ``(0, 1]`` a fraction of
        the space left after the pixel sizes (fractions adding up to more than 1 share that space
        in proportion). ``None``: equal shares.
    spacing
        Pixels between cells, ``(x, y)`` or one number for both.
    border
        Draw a border around each cell.
    name
        Prefix of the cells' IDs; give two grids in the same window different names.

    Notes
    -----
    IDs (public API): the cell whose top-left is row ``r``, column ``c`` is the child window
    ``###<name>_<r>_<c>`` (``###grid_0_1`` by default), whatever its span. Items drawn in a
    cell keep their own IDs: imgui's test engine finds them as ``"**/###record"``.

    Raises
    ------
    ValueError
        On a bad shape or size (naming the value), and from ``grid[...]`` on an index out of
        range, an empty slice or a slice with a step.

    Examples
    --------
    >>> grid = Grid(2, 2, row_heights=[120, 1.0], col_widths=[0.3, 0.7])
    >>> def ui(ctx):  # doctest: +SKIP
    ...     with grid[0, 0:2]:
    ...         recording_controls(ctx, ctx.class_names, on_record=..., on_stop=...)
    ...     with grid[1, 0]:
    ...         stream_health(ctx)
    ...     with grid[1, 1]:
    ...         signal_viewer(ctx, "emg")
    >>> grid.cell_rect((0, slice(0, 2)), available=(1000, 600))
    (0, 0, 1000, 120)
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        row_heights: Sequence[float] | None = None,
        col_widths: Sequence[float] | None = None,
        *,
        spacing: float | tuple[float, float] = 0.0,
        border: bool = False,
        name: str = "grid",
    ):
        for label, value in (("rows", rows), ("cols", cols)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be an integer >= 1, got {value!r}")
        self.rows, self.cols = rows, cols
        self.row_heights = _check_sizes(row_heights, rows, "row_heights", "row")
        self.col_widths = _check_sizes(col_widths, cols, "col_widths", "column")
        pair = spacing if isinstance(spacing, tuple) else (spacing, spacing)
        if len(pair) != 2 or not all(
            isinstance(s, Real) and not isinstance(s, bool) and 0 <= s < math.inf for s in pair
        ):
            raise ValueError(f"spacing must be pixels >= 0 (one number or (x, y)), got {spacing!r}")
        self.spacing = (float(pair[0]), float(pair[1]))
        if not name or "#" in name:
            raise ValueError(f"name must be a non-empty string without '#', got {name!r}")
        self.border = border
        self.name = name
        self._context: Any = None
        self._frame_count = -1
        self._places: dict[int, _Frame] = {}

    def __repr__(self) -> str:
        return (
            f"Grid({self.rows}, {self.cols}, row_heights={self.row_heights}, "
            f"col_widths={self.col_widths})"
        )

    def __getitem__(self, key: tuple[int | slice, int | slice]) -> GridCell:
        if not isinstance(key, tuple) or len(key) != 2:
            raise ValueError(f"index a Grid with [row, col] (ints or slices), got {key!r}")
        rows = _index(key[0], self.rows, "row")
        cols = _index(key[1], self.cols, "column")
        return GridCell(self, rows, cols)

    def cell_rect(
        self, key: tuple[int | slice, int | slice], available: tuple[float, float]
    ) -> Rect:
        """Rectangle ``(x, y, width, height)`` of ``grid[key]`` in a region of ``available`` px.

        Pure: no imgui call, so layouts can be checked without a window. ``x, y`` are relative
        to the grid's top-left corner; a span covers its cells and the spacing between them.
        """
        cell = self[key]
        return self._rect(cell.rows, cell.cols, available)

    def _rect(
        self, rows: tuple[int, int], cols: tuple[int, int], available: tuple[float, float]
    ) -> Rect:
        xs = layout_tracks(available[0], self.col_widths, self.spacing[0])
        ys = layout_tracks(available[1], self.row_heights, self.spacing[1])
        x0, y0 = xs[cols[0]][0], ys[rows[0]][0]
        x1 = xs[cols[1] - 1][0] + xs[cols[1] - 1][1]
        y1 = ys[rows[1] - 1][0] + ys[rows[1] - 1][1]
        return (x0, y0, x1 - x0, y1 - y0)

    def _place(self) -> _Frame:
        """The grid's origin and available size in this frame, measured at its first use."""
        # The context object is held, so imgui-bundle hands back this same wrapper while the
        # context lives (an id() of a temporary wrapper would not be stable).
        context, frame_count = imgui.get_current_context(), imgui.get_frame_count()
        if context is not self._context or frame_count != self._frame_count:
            self._context, self._frame_count, self._places = context, frame_count, {}
        place = imgui.get_id(f"##labsession_grid_{self.name}")
        frame = self._places.get(place)
        if frame is None:
            pos, avail = imgui.get_cursor_pos(), imgui.get_content_region_avail()
            frame = _Frame((pos.x, pos.y), (max(0.0, avail.x), max(0.0, avail.y)))
            self._places[place] = frame
        return frame


class GridCell(AbstractContextManager["GridCell"]):
    """One cell (or span) of a :class:`Grid`; a context manager drawing into its child window.

    Attributes
    ----------
    rows, cols
        ``(start, stop)`` of the rows and columns covered.
    id
        The child window's ID, ``"###<name>_<row>_<col>"`` of the top-left cell.
    visible
        While drawing: False when imgui clipped the cell (drawing into it is still allowed).
    """

    def __init__(self, grid: Grid, rows: tuple[int, int], cols: tuple[int, int]):
        self.grid = grid
        self.rows = rows
        self.cols = cols
        self.id = f"###{grid.name}_{rows[0]}_{cols[0]}"
        self.visible = False

    def __repr__(self) -> str:
        return f"<GridCell rows {self.rows[0]}:{self.rows[1]} cols {self.cols[0]}:{self.cols[1]}>"

    def __enter__(self) -> GridCell:
        frame = self.grid._place()
        x, y, w, h = self.grid._rect(self.rows, self.cols, frame.available)
        imgui.set_cursor_pos(imgui.ImVec2(frame.origin[0] + x, frame.origin[1] + y))
        flags = imgui.ChildFlags_.borders.value if self.grid.border else 0
        self.visible = imgui.begin_child(self.id, imgui.ImVec2(w, h), flags)
        return self

    def __exit__(self, *exc: object) -> None:
        imgui.end_child()
