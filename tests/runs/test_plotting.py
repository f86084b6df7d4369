from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from labsession.runs import COLORS, PlotStyle
from labsession.runs._plotting import LazyPyplot, configure_matplotlib


@pytest.fixture
def restore_rc():
    saved = dict(plt.rcParams)
    yield
    plt.rcParams.update(saved)


def test_style_sets_size_in_mm_dpi_and_spines(restore_rc):
    style = PlotStyle(fig_size_mm=(254, 127), fig_scale=0.5, dpi_save=600, line_width=2.0)
    out, colors = configure_matplotlib(plt, agg=True, style=style)
    assert out is plt
    assert tuple(plt.rcParams["figure.figsize"]) == pytest.approx((5.0, 2.5))
    assert plt.rcParams["savefig.dpi"] == 600
    assert plt.rcParams["lines.linewidth"] == 2.0
    assert plt.rcParams["axes.spines.top"] is False
    assert plt.rcParams["axes.spines.right"] is False
    assert colors == COLORS
    assert plt.rcParams["axes.prop_cycle"].by_key()["color"][0] == COLORS["blue"]


def test_lazy_pyplot_styles_on_first_use(restore_rc):
    lazy, _ = configure_matplotlib(None, style=PlotStyle(dpi_display=77))
    assert isinstance(lazy, LazyPyplot)
    assert not lazy.loaded
    fig = lazy.figure()
    assert lazy.loaded
    assert fig.dpi == 77
    lazy.close(fig)


@pytest.mark.parametrize(
    "kwargs",
    [{"fig_size_mm": (0, 10)}, {"fontsize": "huge"}, {"alpha": 1.5}, {"fig_scale": -1}],
)
def test_bad_style_is_refused(kwargs):
    with pytest.raises(ValueError, match=r"must|not a number"):
        PlotStyle(**kwargs)
