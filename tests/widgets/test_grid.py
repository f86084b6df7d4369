"""Grid: cell rectangles from pixel and fraction sizes, spans, validation, and real imgui frames."""

import math

import pytest
from imgui_bundle import imgui

from labsession.testing import GuiScript, ImguiFrames, run_gui
from labsession.widgets._grid import Grid, layout_tracks


# -- the pure layout ------------------------------------------------------------------------------
def test_tracks_fractions_share_the_length():
    assert layout_tracks(900, [0.5, 0.25, 0.25]) == [(0, 450), (450, 225), (675, 225)]


def test_tracks_pixels_first_then_fractions_share_what_is_left():
    # 260 px fixed, the rest (1000 - 260 - 2 * 10 spacing = 720) split 1:1.
    assert layout_tracks(1000, [260, 0.5, 0.5], spacing=10) == [(0, 260), (270, 360), (640, 360)]


def test_tracks_fractions_over_one_are_weights():
    assert layout_tracks(600, [1, 1, 1]) == [(0, 200), (200, 200), (400, 200)]
    assert layout_tracks(600, [1, 1]) == layout_tracks(600, [0.5, 0.5])


def test_tracks_fractions_under_one_leave_space_empty():
    assert layout_tracks(1000, [0.2, 0.3]) == [(0, 200), (200, 300)]


def test_tracks_never_pass_the_end_and_never_vanish():
    tracks = layout_tracks(100, [1 / 3] * 3)
    assert tracks[-1][0] + tracks[-1][1] <= 100
    assert all(length >= 33 for _, length in tracks)
    # No space left: fractions get the 1-pixel minimum (imgui reads 0 as "fill").
    assert layout_tracks(50, [100, 0.5]) == [(0, 100), (100, 1)]


def test_cell_rect_pixels_fractions_and_spans():
    grid = Grid(3, 2, row_heights=[100, 0.5, 0.5], col_widths=[0.25, 0.75])
    available = (800, 500)
    assert grid.cell_rect((0, 0), available) == (0, 0, 200, 100)
    assert grid.cell_rect((0, 1), available) == (200, 0, 600, 100)
    assert grid.cell_rect((1, 0), available) == (0, 100, 200, 200)
    assert grid.cell_rect((2, 1), available) == (200, 300, 600, 200)
    assert grid.cell_rect((0, slice(0, 2)), available) == (0, 0, 800, 100)
    assert grid.cell_rect((slice(1, None), 1), available) == (200, 100, 600, 400)
    assert grid.cell_rect((slice(None), slice(None)), available) == (0, 0, 800, 500)
    assert grid.cell_rect((-1, -1), available) == grid.cell_rect((2, 1), available)


def test_cell_rect_spans_include_the_spacing():
    grid = Grid(2, 2, spacing=(10, 4))
    available = (210, 104)
    assert grid.cell_rect((0, 0), available) == (0, 0, 100, 50)
    assert grid.cell_rect((1, 1), available) == (110, 54, 100, 50)
    assert grid.cell_rect((slice(0, 2), slice(0, 2)), available) == (0, 0, 210, 104)


def test_default_sizes_are_equal_shares():
    grid = Grid(2, 4)
    assert grid.row_heights == [0.5, 0.5]
    assert grid.col_widths == [0.25] * 4
    assert grid[1, 2].id == "###grid_1_2"
    assert grid[0:2, 1:3].id == "###grid_0_1"


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rows": 0, "cols": 1}, "rows must be an integer >= 1, got 0"),
        ({"rows": 2, "cols": 1.5}, "cols must be an integer >= 1, got 1.5"),
        ({"rows": 2, "cols": 1, "row_heights": [0.5]}, r"one size per row \(2\), got 1"),
        ({"rows": 1, "cols": 2, "col_widths": [0.5, 0]}, r"col_widths\[1\] .* got 0"),
        ({"rows": 1, "cols": 1, "row_heights": [-3]}, r"row_heights\[0\] .* got -3"),
        ({"rows": 1, "cols": 1, "row_heights": [math.nan]}, "got nan"),
        ({"rows": 1, "cols": 1, "col_widths": [math.inf]}, "got inf"),
        ({"rows": 1, "cols": 1, "col_widths": ["100"]}, "got '100'"),
        ({"rows": 1, "cols": 1, "col_widths": [True]}, "got True"),
        ({"rows": 1, "cols": 1, "col_widths": "1"}, "must be a sequence"),
        ({"rows": 1, "cols": 1, "spacing": -1}, "spacing must be pixels >= 0"),
        ({"rows": 1, "cols": 1, "name": "a#b"}, "name must be"),
    ],
)
def test_bad_shapes_and_sizes_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Grid(**kwargs)


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ((3, 0), r"row index 3 is out of range for a grid of 3 rows \(0..2\)"),
        ((0, -3), "column index -3 is out of range for a grid of 2 columns"),
        ((slice(0, 4), 0), "row slice bound 4 is out of range"),
        ((slice(2, 2), 0), "row slice 2:2 selects no row"),
        ((0, slice(1, 0)), "column slice 1:0 selects no column"),
        ((slice(0, 3, 2), 0), "must have step 1, got step 2"),
        ((0.5, 0), "row index must be an integer or a slice, got 0.5"),
        ((0,), r"index a Grid with \[row, col\]"),
        (0, r"index a Grid with \[row, col\]"),
    ],
)
def test_bad_indices_name_the_value(key, match):
    grid = Grid(3, 2)
    with pytest.raises(ValueError, match=match):
        grid[key]


# -- drawn in imgui ------------------------------------------------------------------------------
CELLS = [(1, 1), (0, slice(0, 2)), (1, 0)]


def _draw(grid_factory, frames):
    """Draw ``CELLS`` (bottom-right first); record each child's rect and cursor by position."""
    seen = {}
    origin = available = None
    for _ in range(3):
        with frames.frame():
            grid = grid_factory()
            pos, avail = imgui.get_cursor_screen_pos(), imgui.get_content_region_avail()
            origin, available = (pos.x, pos.y), (avail.x, avail.y)
            for i, key in enumerate(CELLS):
                with grid[key] as cell:
                    window_pos, size = imgui.get_window_pos(), imgui.get_window_size()
                    cursor = imgui.get_cursor_screen_pos()
                    seen[i] = (window_pos.x, window_pos.y, size.x, size.y, cursor.x, cursor.y)
                    assert cell.visible
                    imgui.text("content")
    return grid, origin, available, seen


@pytest.mark.parametrize("per_frame", [False, True], ids=["created-once", "created-per-frame"])
def test_cells_are_child_windows_at_their_rects(per_frame):
    made = Grid(2, 2, row_heights=[120, 1.0], col_widths=[0.3, 0.7], spacing=6)
    with ImguiFrames((1000, 700)) as frames:
        grid, origin, available, seen = _draw(
            (lambda: Grid(2, 2, row_heights=[120, 1.0], col_widths=[0.3, 0.7], spacing=6))
            if per_frame
            else (lambda: made),
            frames,
        )
    for i, (x, y, w, h, cursor_x, cursor_y) in seen.items():
        key = CELLS[i]
        rx, ry, rw, rh = grid.cell_rect(key, available)
        assert (x, y, w, h) == (origin[0] + rx, origin[1] + ry, rw, rh), key
        assert x <= cursor_x < x + w
        assert y <= cursor_y < y + h
    # The cells tile the available region: the span's width is the full width.
    assert seen[1][2] == available[0]
    x, y, w, h = seen[0][:4]
    assert (x + w, y + h) == (origin[0] + available[0], origin[1] + available[1])


def test_nested_grid_measures_its_cell():
    outer, inner = Grid(1, 2), Grid(2, 1, name="inner")
    with ImguiFrames((800, 600)) as frames, frames.frame(), outer[0, 1]:
        avail = imgui.get_content_region_avail()
        with inner[1, 0]:
            size = imgui.get_window_size()
    assert size.x == avail.x
    assert abs(size.y - avail.y / 2) <= 1


def test_grid_names_prefix_the_cell_ids():
    left, right = Grid(1, 1, name="left"), Grid(1, 1, name="right")
    with ImguiFrames((800, 600)) as frames, frames.frame():
        with left[0, 0] as a:
            pass
        with right[0, 0] as b:
            pass
    assert (a.id, b.id) == ("###left_0_0", "###right_0_0")


@pytest.mark.gui
def test_cells_in_a_real_window(display):
    """Cells drawn bottom-right first still line up, and their items take clicks."""
    grid = Grid(2, 2, row_heights=[0.25, 0.75], spacing=4, border=True)
    clicks, rects = [], {}

    def gui():
        with grid[1, 1]:
            rects["1_1"] = imgui.get_window_pos(), imgui.get_window_size()
            if imgui.button("Bottom###bottom"):
                clicks.append("bottom")
        with grid[0, 0:2]:
            rects["0_0"] = imgui.get_window_pos(), imgui.get_window_size()
            if imgui.button("Top###top"):
                clicks.append("top")

    def script(ctx):
        ctx.item_click("**/###bottom")
        ctx.item_click("**/###top")

    run_gui(gui, GuiScript(script, window_size=(800, 600)))
    assert clicks == ["bottom", "top"]
    (top_pos, top_size), (bottom_pos, bottom_size) = rects["0_0"], rects["1_1"]
    assert top_pos.y < bottom_pos.y
    assert top_pos.y + top_size.y + 4 == bottom_pos.y
    assert top_pos.x + top_size.x == bottom_pos.x + bottom_size.x
    assert abs(bottom_size.y - 3 * top_size.y) <= 2


def test_docstring_examples_run():
    import doctest

    from labsession.widgets import _grid as module

    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
